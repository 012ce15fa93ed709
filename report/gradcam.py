"""Grad-CAM heatmaps through ``pytorch_grad_cam`` on a run's best checkpoint.

The target layer is picked from timm's ``feature_info`` (the stages a backbone
exposes): the deepest stage whose feature map is still at least ``MIN_SIDE``
pixels wide at the run's input size (transformer tokens are
reshaped to their square grid). At small inputs (32-64 px) the last stage
is 1x1 or 2x2, where a heatmap says nothing; one stage earlier still carries
class evidence at a usable resolution. Models without ``feature_info`` fall back
to their last Conv2d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

MIN_SIDE = 4


@dataclass
class CamResult:
    images: np.ndarray  # float (N, S, S, 3) in [0, 1]: what the model saw (resized, not normalised)
    pred_maps: np.ndarray  # (N, S, S) Grad-CAM for the predicted class, 0..1
    true_maps: np.ndarray  # (N, S, S) Grad-CAM for the true class, 0..1
    probs: np.ndarray  # (N, C) the model's softmax on these images, recomputed
    layer: str  # the target layer's module name
    layer_side: int  # its feature map's side at this input size


def _feature_modules(backbone: nn.Module) -> list[str]:
    info = getattr(backbone, "feature_info", None)
    if info is None:
        return []
    entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    return [e["module"] for e in entries if isinstance(e, dict) and e.get("module")]


def _find(root: nn.Module, name: str) -> nn.Module | None:
    for candidate in (name, name.replace("_", ".")):
        try:
            return root.get_submodule(candidate)
        except AttributeError:
            continue
    return None


def pick_target_layer(model: nn.Module, image_size: int, min_side: int | None = None) -> tuple[str, nn.Module, int]:
    """(name, module, feature map side) of the layer Grad-CAM should look at, measured with one forward pass."""
    min_side = MIN_SIDE if min_side is None else min_side
    backbone = model.backbone
    names = [n for n in _feature_modules(backbone) if _find(backbone, n) is not None]
    if not names:
        convs = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"{type(backbone).__name__} has no feature_info and no Conv2d for Grad-CAM")
        names = [convs[-1][0]]
    shapes: dict[str, tuple] = {}

    def recorder(name: str):
        def hook(_module, _inputs, output) -> None:  # returns None: the output is left alone
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape)
        return hook

    hooks = [_find(backbone, n).register_forward_hook(recorder(n)) for n in names]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    prefix = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
    spatial = [(n, _side(shapes[n], prefix)) for n in names if n in shapes]
    spatial = [(n, side) for n, side in spatial if side]
    if not spatial:
        raise ValueError(f"no spatial feature map among {names} for Grad-CAM (shapes {list(shapes.values())})")
    good = [(n, s) for n, s in spatial if s >= min_side]
    name, side = good[-1] if good else max(spatial, key=lambda t: t[1])
    return name, _find(backbone, name), int(side)


def _side(shape: tuple, prefix: int) -> int:
    """Side of a square map: NCHW conv features, or (B, prefix + side*side, C) transformer tokens; 0 if neither."""
    if len(shape) == 4 and shape[-1] == shape[-2]:
        return int(shape[-1])
    if len(shape) == 3:
        side = math.isqrt(shape[1] - prefix)
        return side if side * side == shape[1] - prefix else 0
    return 0


def token_reshape(prefix: int):
    """pytorch_grad_cam reshape_transform for ViT-style token outputs: drop prefix tokens, tokens -> NCHW."""
    def reshape(t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 3:
            return t
        tokens = t[:, prefix:, :]
        side = math.isqrt(tokens.shape[1])
        return tokens.reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)
    return reshape


def compute(checkpoint: Path, x_uint8: np.ndarray, true: np.ndarray) -> CamResult:
    """Grad-CAM maps for the predicted and the true class of each image (uint8 (N, C, H, W)) of a checkpoint."""
    from engine.checkpoint import load_classifier

    model, meta = load_classifier(checkpoint, "cpu")
    return compute_for_model(model, x_uint8, true, int(meta["image_size"]), meta["mean"], meta["std"])


def compute_for_model(model: nn.Module, x_uint8: np.ndarray, true: np.ndarray, image_size: int, mean, std
                      ) -> CamResult:
    """Grad-CAM through pytorch_grad_cam on a classifier (``engine.models.Classifier``) in eval mode."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from engine.transforms import preprocess

    x = preprocess(torch.from_numpy(np.ascontiguousarray(x_uint8)), image_size, mean, std)
    name, layer, side = pick_target_layer(model, image_size)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1).numpy()
    pred = probs.argmax(1)
    prefix = int(getattr(model.backbone, "num_prefix_tokens", 0) or 0)
    with GradCAM(model=model, target_layers=[layer], reshape_transform=token_reshape(prefix)) as cam:
        pred_maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in pred])
        true_maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in true])
    shown = (x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)).clamp(0, 1)
    return CamResult(shown.permute(0, 2, 3, 1).numpy(), np.asarray(pred_maps), np.asarray(true_maps), probs,
                     name, side)
