"""Model checkpoints: safetensors with the metadata deployment needs.

Metadata (all strings, as safetensors requires): ``format`` ("finetune-tui/1"),
``backbone``, ``head``, ``num_classes``, ``classes`` (JSON list), ``image_size``,
``mean``/``std`` (JSON lists, 0-1 scale), ``channels`` ("RGB"), ``in_chans_source``
(1 for greyscale data fed as RGB), ``run_id``, ``epoch``, ``val_loss``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.models import Classifier, build_classifier
from engine.store import atomic_write

FORMAT = "finetune-tui/1"


class CheckpointError(Exception):
    pass


def save_checkpoint(model: torch.nn.Module, path: str | Path, meta: dict) -> None:
    """Atomically write the model's weights with ``meta`` (values JSON-encoded where not str)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    strmeta = {"format": FORMAT}
    strmeta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=strmeta))


def read_metadata(path: str | Path) -> dict:
    """The checkpoint's metadata with JSON values decoded."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} not found") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a finetune-tui checkpoint (format {raw.get('format')!r})")
    out = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def load_state(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None


def load_classifier(path: str | Path, device: str = "cpu") -> tuple[Classifier, dict]:
    """Rebuild the classifier from a checkpoint's metadata and load its weights (eval mode)."""
    meta = read_metadata(path)
    model = build_classifier(str(meta["backbone"]), str(meta["head"]), int(meta["num_classes"]))
    try:
        model.load_state_dict(load_state(path, device))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} doesn't match its own metadata: {str(exc)[:200]}") from None
    return model.to(device).eval(), meta
