"""What a checkpoint or an exported ONNX file says about its model: one type, one string encoding.

safetensors metadata and ONNX ``metadata_props`` are both str -> str maps. A
``ModelMeta`` becomes one with ``to_strings(kind)`` (values that are not strings
are JSON) and comes back with ``ModelMeta.from_strings(props, where, kind)``,
which checks the format, the required keys and their types, and raises one
``ModelMetaError`` naming the file. ``kind`` is "checkpoint" or "onnx"; only
the ``format`` value differs.

Formats: "finetune-tui/2" and "finetune-tui-onnx/2" add ``antialias`` and
``storage`` (``engine.preprocess``). Files written before them
("finetune-tui/1", "finetune-tui-onnx/1") still load: no storage means the
images were used as given, and the antialias rule is today's.

``read_safetensors_meta(path)`` reads a checkpoint's metadata from the file's
JSON header alone (8-byte little-endian length, then JSON), so the run store
and the TUI read checkpoints without torch. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import numbers
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.preprocess import Preprocess, Storage

CHECKPOINT, ONNX = "checkpoint", "onnx"
FORMATS = {CHECKPOINT: "finetune-tui/2", ONNX: "finetune-tui-onnx/2"}
LEGACY_FORMATS = {CHECKPOINT: "finetune-tui/1", ONNX: "finetune-tui-onnx/1"}  # no antialias, no storage
_WHAT = {CHECKPOINT: "finetune-tui checkpoint", ONNX: "finetune-tui ONNX export"}

# Keys every file of ours carries (the /1 formats wrote all of these).
REQUIRED = ("backbone", "head", "num_classes", "classes", "image_size", "mean", "std", "interpolation",
            "channels", "in_chans_source", "run_id", "dataset", "epoch", "val_loss")
ADDED_IN_2 = ("antialias", "storage")
FIELDS = REQUIRED + ADDED_IN_2  # what ``to_dict`` writes besides ``format`` and the extras

MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


class ModelMetaError(UserError, ValueError):
    """A file's metadata is missing, not ours or malformed; the message names the file, one line."""


def encode_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Values that are not strings become JSON (safetensors and ONNX store strings only)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def decode_strings(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of ``encode_strings``: JSON values decoded, plain strings kept."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


@dataclass(frozen=True)
class ModelMeta:
    """A trained classifier: what rebuilds it, what it outputs and how its input is prepared."""

    backbone: str
    head: str
    classes: tuple[str, ...]  # names in label order; num_classes is their count
    image_size: int
    mean: tuple[float, float, float]  # 0-1 scale
    std: tuple[float, float, float]
    in_chans_source: int = 3  # 1: grey data fed as RGB
    interpolation: str = "bilinear"
    antialias: str = "shrink"  # engine.preprocess.ANTIALIAS_RULES
    channels: str = "RGB"  # what the model takes
    storage: Storage | None = None  # how files became stored images; None: used as given
    run_id: str = ""
    dataset: str = ""
    epoch: int = 0
    val_loss: float = math.nan
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)  # other keys (ONNX: opset, source_run...)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "extra", dict(self.extra))
        spec = self.preprocess  # validates image_size, mean, std, interpolation, antialias
        object.__setattr__(self, "mean", spec.mean)
        object.__setattr__(self, "std", spec.std)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(self.image_size, self.mean, self.std, self.interpolation, self.antialias,
                          grey=self.in_chans_source == 1, storage=self.storage)

    def with_extra(self, **extra: Any) -> ModelMeta:
        return replace(self, extra={**self.extra, **extra})

    def to_dict(self, kind: str = CHECKPOINT) -> dict[str, Any]:
        """JSON-ready values, ``format`` first; what ``read_metadata`` hands out."""
        return {
            "format": FORMATS[kind], "backbone": self.backbone, "head": self.head, "num_classes": self.num_classes,
            "classes": list(self.classes), "image_size": self.image_size, "mean": list(self.mean),
            "std": list(self.std), "interpolation": self.interpolation, "antialias": self.antialias,
            "channels": self.channels, "in_chans_source": self.in_chans_source,
            "storage": None if self.storage is None else self.storage.to_dict(),
            "run_id": self.run_id, "dataset": self.dataset, "epoch": self.epoch, "val_loss": self.val_loss,
            **self.extra,
        }

    def to_strings(self, kind: str = CHECKPOINT) -> dict[str, str]:
        return encode_strings(self.to_dict(kind))

    @classmethod
    def from_strings(cls, props: Mapping[str, str], where: str, kind: str = CHECKPOINT) -> ModelMeta:
        """Decode and validate a file's metadata; ``where`` names the file in the error."""
        return cls.from_dict(decode_strings(props), where, kind)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str, kind: str = CHECKPOINT) -> ModelMeta:
        """Validate decoded metadata whose ``format`` must be ``kind``'s (current or /1)."""
        fmt = values.get("format")
        if fmt not in (FORMATS[kind], LEGACY_FORMATS[kind]):
            raise ModelMetaError(f"{where} is not a {_WHAT[kind]} (metadata format {fmt!r})")
        return _build(values, where, legacy=fmt == LEGACY_FORMATS[kind])

    @classmethod
    def coerce(cls, meta: ModelMeta | Mapping[str, Any], where: str = "model metadata") -> ModelMeta:
        """A ModelMeta as is; a mapping with a ``format`` (a decoded file) validated by that format;
        a mapping without one (fields given in code, e.g. a test's) validated with /1 defaults."""
        if isinstance(meta, ModelMeta):
            return meta
        fmt = meta.get("format")
        for kind in (CHECKPOINT, ONNX):
            if fmt in (FORMATS[kind], LEGACY_FORMATS[kind]):
                return cls.from_dict(meta, where, kind)
        if fmt is not None:
            raise ModelMetaError(f"{where} is not finetune-tui metadata (format {fmt!r})")
        return _build(meta, where, legacy=True)


def _build(values: Mapping[str, Any], where: str, legacy: bool) -> ModelMeta:
    """``legacy``: antialias and storage may be absent (/1 files, fields given in code): today's rule, no storage."""
    required = REQUIRED if legacy else FIELDS
    missing = [k for k in required if k not in values]
    if missing:
        raise ModelMetaError(f"{where}: metadata lacks {', '.join(missing)}")

    def bad(key: str, want: str) -> ModelMetaError:
        return ModelMetaError(f"{where}: metadata {key} must be {want}, got {values[key]!r}")

    def integer(key: str) -> int:
        v = values[key]
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise bad(key, "an integer")
        return int(v)

    def text(key: str) -> str:
        if not isinstance(values[key], str):
            raise bad(key, "a string")
        return values[key]

    classes = values["classes"]
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a non-empty list of names")
    if integer("num_classes") != len(classes):
        raise ModelMetaError(f"{where}: metadata num_classes {values['num_classes']} != {len(classes)} classes")
    for key in ("mean", "std"):
        v = values[key]
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(
                isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v):
            raise ModelMetaError(f"{where}: mean/std must have 3 values, got {values['mean']!r} / {values['std']!r}")
    if integer("in_chans_source") not in (1, 3):
        raise bad("in_chans_source", "1 or 3")
    val_loss = values["val_loss"]
    if not isinstance(val_loss, numbers.Real) or isinstance(val_loss, bool):
        raise bad("val_loss", "a number")
    storage = None
    try:
        if values.get("storage") is not None:
            storage = Storage.from_dict(values["storage"])
        meta = ModelMeta(
            backbone=text("backbone"), head=text("head"), classes=tuple(classes), image_size=integer("image_size"),
            mean=tuple(values["mean"]), std=tuple(values["std"]), in_chans_source=integer("in_chans_source"),
            interpolation=text("interpolation"), antialias=text("antialias") if "antialias" in values else "shrink",
            channels=text("channels"), storage=storage, run_id=text("run_id"), dataset=text("dataset"),
            epoch=integer("epoch"), val_loss=float(val_loss),
            extra={k: v for k, v in values.items() if k not in FIELDS and k != "format"},
        )
    except ModelMetaError:
        raise
    except ValueError as exc:  # Storage / Preprocess refuse what this code can't reproduce
        raise ModelMetaError(f"{where}: {exc}") from None
    if meta.channels != "RGB":
        raise bad("channels", '"RGB"')
    return meta


def read_safetensors_header(path: str | Path) -> dict[str, str]:
    """A .safetensors file's ``__metadata__`` (str -> str) from its JSON header; reads no tensors."""
    where = f"checkpoint {path}"
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelMetaError(f"{where} is unreadable (shorter than a safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER:
                raise ModelMetaError(f"{where} is unreadable (header length {n} is not a safetensors header)")
            blob = fh.read(n)
    except FileNotFoundError:
        raise ModelMetaError(f"{where} not found") from None
    except IsADirectoryError:
        raise ModelMetaError(f"{where} is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise ModelMetaError(f"{where} is unreadable ({type(exc).__name__}: {exc})") from None
    if len(blob) < n:
        raise ModelMetaError(f"{where} is unreadable (truncated: header says {n} bytes, file has {len(blob)})")
    try:
        header = json.loads(blob)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise ModelMetaError(f"{where} is unreadable (header is not JSON: {str(exc)[:120]})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModelMetaError(f"{where} is unreadable (__metadata__ is not a map of strings)")
    return meta


def read_safetensors_meta(path: str | Path) -> ModelMeta:
    """The checkpoint's ``ModelMeta``, torch-free; ``ModelMetaError`` (naming the file) if it isn't ours."""
    return ModelMeta.from_strings(read_safetensors_header(path), f"checkpoint {path}", CHECKPOINT)
