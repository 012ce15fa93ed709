"""Model checkpoints: safetensors with the metadata deployment needs.

The metadata is an ``engine.model_meta.ModelMeta`` (docs/CONTRACTS.md), stored
as safetensors' string map by ``ModelMeta.to_strings`` and read back from the
file's header without torch (``engine.model_meta.read_safetensors_meta``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.errors import UserError
from engine.model_meta import CHECKPOINT, FORMATS, ModelMeta, ModelMetaError, read_safetensors_meta
from engine.models import Classifier, build_classifier
from engine.store import atomic_write

FORMAT = FORMATS[CHECKPOINT]


class CheckpointError(UserError):
    pass


def save_checkpoint(model: torch.nn.Module, path: str | Path, meta: ModelMeta | Mapping[str, Any]) -> None:
    """Atomically write the model's weights with ``meta`` (a ModelMeta, or a mapping of its fields)."""
    try:
        strmeta = ModelMeta.coerce(meta, f"metadata for {path}").to_strings(CHECKPOINT)
    except ModelMetaError as exc:
        raise CheckpointError(str(exc)) from None
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=strmeta))


def read_model_meta(path: str | Path) -> ModelMeta:
    """The checkpoint's ModelMeta; CheckpointError (one line, naming the file) if it isn't readable or ours."""
    try:
        return read_safetensors_meta(path)
    except ModelMetaError as exc:
        raise CheckpointError(str(exc)) from None


def read_metadata(path: str | Path) -> dict:
    """The checkpoint's metadata as plain values (``ModelMeta.to_dict``: lists, ``storage`` a dict or None)."""
    return read_model_meta(path).to_dict(CHECKPOINT)


def load_state(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None


def load_classifier(path: str | Path, device: str = "cpu") -> tuple[Classifier, dict]:
    """Rebuild the classifier from a checkpoint's metadata and load its weights (eval mode).

    The metadata comes back as ``read_metadata``'s dict; ``ModelMeta.coerce`` turns it back into the type.
    """
    meta = read_model_meta(path)
    model = build_classifier(meta.backbone, meta.head, meta.num_classes)
    try:
        model.load_state_dict(load_state(path, device))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} doesn't match its own metadata: {str(exc)[:200]}") from None
    return model.to(device).eval(), meta.to_dict(CHECKPOINT)
