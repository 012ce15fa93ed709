"""Configuration as data: one frozen dataclass per concern.

Precedence is command line > grid file > defaults. Unknown keys and values of
the wrong type are errors (``ConfigError``) that name the key and the source.
The resolved config of every run is written to its folder (``config.json``).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad config value; the message is one line a user can act on."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "footwear"  # a recipe name, or "imagefolder:/path/to/tree"
    data_root: str = "data"  # where source datasets (CIFAR, Fashion-MNIST) are looked for
    download: bool = False  # fetch missing sources through torchvision (needs internet)
    image_size: int = 64  # side fed to the backbone; the seed used 32, ImageNet nets like more
    val_fraction: float = 0.1  # carved out of train, stratified, seeded
    batch_size: int = 64
    augment: bool = False  # random crop + flip + colour jitter, on the device, per batch
    train_limit: int = 0  # keep at most this many training images (class-balanced); 0 = all


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_lite0"  # short name (vgg16, resnet50, ...) or any timm name
    head: str = "seed"  # "seed" (256-128 MLP with dropout) or "linear"
    weights: str = "pretrained"  # "pretrained", "random", or a path to .safetensors/.pth
    on_missing_weights: str = "fail"  # "fail" or "random" when pretrained weights can't be had


@dataclass(frozen=True)
class TrainConfig:
    strategy: str = "frozen"  # frozen, partial, full, gradual, discriminative
    epochs: int = 20
    lr: float = 0.0  # 0 = the strategy's default (frozen 1e-3, partial 1e-4, full 1e-5, ...)
    optimizer: str = "adam"  # adam or adamw or sgd
    weight_decay: float = 0.0
    patience: int = 5  # early stopping on val_loss; best weights are kept
    plateau_factor: float = 0.5  # ReduceLROnPlateau
    plateau_patience: int = 3
    seed: int = 42
    class_weighting: bool = False  # weight the loss by inverse class frequency
    label_smoothing: float = 0.0
    partial_fraction: float = 0.2  # partial: last fraction of the backbone's layer groups
    gradual_stages: int = 4  # gradual: unfreezing stages after the head-only stage
    gradual_stage_epochs: int = 2  # gradual: epochs per stage
    gradual_lr_decay: float = 0.5  # gradual: LR multiplier applied at each new stage
    min_lr: float = 1e-5  # discriminative: LR of the stem (the head gets ``lr``)
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    amp: bool = True  # bf16/fp16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    threads: int = 0  # CPU threads for this run; 0 = share the machine's cores across workers
    cache_features: bool = True  # compute the frozen part of the backbone once


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_id(self) -> str:
        return run_id(self.data.dataset, self.model.backbone, self.train.strategy)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, source: str = "config") -> "RunConfig":
        unknown = set(obj) - {"data", "model", "train"}
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected data, model, train")
        return cls(
            data=_build(DataConfig, obj.get("data", {}), f"{source} [data]"),
            model=_build(ModelConfig, obj.get("model", {}), f"{source} [model]"),
            train=_build(TrainConfig, obj.get("train", {}), f"{source} [train]"),
        )


@dataclass(frozen=True)
class GridConfig:
    """A grid is the product of dataset, backbone and strategy names over a base config."""

    name: str = "grid"
    datasets: tuple[str, ...] = ("footwear",)
    backbones: tuple[str, ...] = ("efficientnet_lite0",)
    strategies: tuple[str, ...] = ("frozen", "partial", "full")
    concurrency: int = 0  # runs at once; 0 = one per GPU, or 1 on CPU
    base: RunConfig = field(default_factory=RunConfig)
    # per-name settings: {"full": {"train.epochs": 3}} applies to every run whose
    # dataset, backbone or strategy is "full" (TOML: [overrides.full])
    overrides: dict = field(default_factory=dict)

    def runs(self) -> list[RunConfig]:
        out = []
        for d in self.datasets:
            for b in self.backbones:
                for s in self.strategies:
                    run = replace(
                        self.base,
                        data=replace(self.base.data, dataset=d),
                        model=replace(self.base.model, backbone=b),
                        train=replace(self.base.train, strategy=s),
                    )
                    for name in (d, b, s):
                        if name in self.overrides:
                            run = override_run(run, self.overrides[name], f"overrides.{name}")
                    out.append(run)
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, source: str = "grid") -> "GridConfig":
        obj = dict(obj)
        # a TOML file has [data]/[model]/[train] at top level; a stored grid.json nests them in "base"
        sections = obj.pop("base", None) or {k: obj.pop(k) for k in ("data", "model", "train") if k in obj}
        base = RunConfig.from_dict(sections, source)
        overrides = obj.pop("overrides", {}) or {}
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ConfigError(f"{source} overrides: expected tables like [overrides.full] with section.key = value")
        grid = _build(cls, obj, source, skip=("base", "overrides"))
        grid = replace(grid, base=base, overrides={k: dict(v) for k, v in overrides.items()})
        grid.runs()  # check every override now, not when a run starts
        return grid


def override_run(run: RunConfig, settings: dict, source: str) -> RunConfig:
    """Apply ``{"train.epochs": 3, ...}`` (or nested ``{"train": {"epochs": 3}}``) to one run."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    sections = {"data": dataclasses.asdict(run.data), "model": dataclasses.asdict(run.model),
                "train": dataclasses.asdict(run.train)}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise ConfigError(f"{source}: {key!r} must be data.KEY, model.KEY or train.KEY")
        if name in ("dataset", "backbone", "strategy"):
            raise ConfigError(f"{source}: {key!r} is set by the grid, not by an override")
        sections[section][name] = value
    return RunConfig.from_dict(sections, source)


def run_id(dataset: str, backbone: str, strategy: str) -> str:
    """Folder-safe id of a run: ``<dataset>__<backbone>__<strategy>``."""
    ds = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.replace("imagefolder:", "if-")).strip("-")
    return f"{ds}__{backbone}__{strategy}"


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_grid_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ConfigError(f"grid name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    return name


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(i, str) for i in items):
            items = tuple(i.strip() for i in items if i.strip())
            if items:
                return items
    raise ConfigError(f"{where}: expected {_type_name(typ)}, got {value!r}")


def _type_name(typ: Any) -> str:
    if typing.get_origin(typ) is tuple:
        return "a list of names"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(typ, str(typ))


def _build(cls, obj: dict, source: str, skip: tuple[str, ...] = ()):
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {obj!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)} - set(skip)
    unknown = set(obj) - known
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {k: _coerce(v, hints[k], f"{source} {k}") for k, v in obj.items()}
    inst = cls(**kwargs)
    _validate(inst, source)
    return inst


_CHOICES = {
    "head": ("seed", "linear"),
    "on_missing_weights": ("fail", "random"),
    "optimizer": ("adam", "adamw", "sgd"),
}


def _validate(inst, source: str) -> None:
    for f in fields(inst):
        value = getattr(inst, f.name)
        if f.name in _CHOICES and value not in _CHOICES[f.name]:
            raise ConfigError(f"{source} {f.name}: {value!r} is not one of {', '.join(_CHOICES[f.name])}")
    checks = {
        "image_size": lambda v: 8 <= v <= 1024,
        "batch_size": lambda v: v >= 1,
        "val_fraction": lambda v: 0.0 < v < 0.9,
        "epochs": lambda v: v >= 1,
        "patience": lambda v: v >= 1,
        "plateau_factor": lambda v: 0.0 < v < 1.0,
        "partial_fraction": lambda v: 0.0 < v <= 1.0,
        "lr": lambda v: v >= 0.0,
        "min_lr": lambda v: v > 0.0,
        "gradual_stages": lambda v: v >= 1,
        "gradual_stage_epochs": lambda v: v >= 1,
        "train_limit": lambda v: v >= 0,
        "concurrency": lambda v: v >= 0,
        "label_smoothing": lambda v: 0.0 <= v < 1.0,
    }
    for name, ok in checks.items():
        if hasattr(inst, name) and not ok(getattr(inst, name)):
            raise ConfigError(f"{source} {name}: {getattr(inst, name)!r} is out of range")


def load_grid_file(path: str | Path) -> GridConfig:
    """Read a TOML grid file; the grid's name defaults to the file's stem."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"grid file {path} not found; pass a TOML file or --preset demo|seed") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid file {path}: invalid TOML: {exc}") from None
    obj.setdefault("name", path.stem)
    return GridConfig.from_dict(obj, source=str(path))


def apply_overrides(grid: GridConfig, overrides: dict[str, Any], source: str = "command line") -> GridConfig:
    """Apply ``{"train.epochs": 3, "datasets": "a,b", ...}``; the command line beats the file."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    for key, value in overrides.items():
        if "." in key:
            section, _, name = key.partition(".")
            if section not in sections:
                raise ConfigError(f"{source}: unknown section in {key!r}; expected data., model. or train.")
            sections[section][name] = value
        else:
            top[key] = value
    base = grid.base
    new_sections = {}
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        current = dataclasses.asdict(getattr(base, section))
        current.update(sections[section])
        new_sections[section] = _build(cls, current, f"{source} {section}")
    current_top = {k: v for k, v in dataclasses.asdict(grid).items() if k != "base"}
    current_top.update(top)
    current_top.pop("overrides", None)
    new_grid = _build(GridConfig, current_top, source, skip=("base", "overrides"))
    return replace(new_grid, base=RunConfig(**new_sections), overrides=grid.overrides)


def parse_set(items: list[str]) -> dict[str, str]:
    """``["train.epochs=3", ...]`` -> ``{"train.epochs": "3"}`` (types are checked later)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=5")
        out[key.strip()] = value.strip()
    return out
