"""The classifier: a timm backbone's features, our pooling, and a head."""

from __future__ import annotations

import logging

import timm
import torch
from torch import nn

from engine.backbones import resolve_backbone
from engine.errors import UserError
from engine.heads import HEADS, build_head  # noqa: F401  (the head registry; re-exported)

log = logging.getLogger(__name__)


class Pool(nn.Module):
    """Global average pool for conv maps; the backbone's own pooling for token sequences."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        # kept out of the module tree: the backbone is registered by the Classifier
        self._forward_head = backbone.forward_head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 4:
            return features.mean(dim=(2, 3))
        return self._forward_head(features, pre_logits=True)


class Classifier(nn.Module):
    """backbone.forward_features -> Pool -> head. ``features`` is what a frozen backbone caches."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_features: int):
        super().__init__()
        self.backbone = backbone
        self.pool = Pool(backbone)
        self.head = head
        self.num_features = num_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.backbone.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def create_backbone(name: str, drop_path: float = 0.0) -> nn.Module:
    """A randomly initialised timm backbone with no classifier, built for ONNX export.

    ``drop_path`` > 0 builds it with timm's stochastic depth (identity in eval: inference and export are the
    same net, so a checkpoint is rebuilt without it).
    """
    timm_name = resolve_backbone(name)
    extra = {"drop_path_rate": drop_path} if drop_path > 0 else {}
    try:
        model = timm.create_model(timm_name, pretrained=False, num_classes=0, exportable=True, **extra)
    except TypeError as e:
        if extra and "drop_path_rate" in str(e):
            raise UserError(f"model.drop_path = {drop_path}: timm's {timm_name} has no stochastic depth; "
                            "set model.drop_path = 0 for this backbone") from None
        raise
    # VGG's pre_logits ConvMlp (100M params) is unused: we pool forward_features ourselves
    if type(getattr(model, "pre_logits", None)).__name__ == "ConvMlp":
        model.pre_logits = nn.Identity()
    return model


def feature_dim(backbone: nn.Module, in_chans: int = 3) -> int:
    """Pooled feature size, measured (num_features is not always what forward_features returns)."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        size = max(32, backbone.pretrained_cfg.get("min_input_size", (3, 32, 32))[-1])
        fixed = backbone.pretrained_cfg.get("fixed_input_size", False)
        if fixed:
            size = backbone.pretrained_cfg["input_size"][-1]
        out = backbone.forward_features(torch.zeros(1, in_chans, size, size))
        dim = out.shape[1] if out.ndim == 4 else backbone.forward_head(out, pre_logits=True).shape[-1]
    backbone.train(was_training)
    return int(dim)


def build_classifier(backbone_name: str, head: str, num_classes: int, drop_path: float = 0.0) -> Classifier:
    backbone = create_backbone(backbone_name, drop_path)
    dim = feature_dim(backbone)
    return Classifier(backbone, build_head(head, dim, num_classes), dim)


def norm_config(backbone: nn.Module) -> dict:
    """mean/std/interpolation the backbone was pretrained with (timm's pretrained_cfg)."""
    cfg = timm.data.resolve_data_config({}, model=backbone)
    return {"mean": list(cfg["mean"]), "std": list(cfg["std"]), "interpolation": cfg.get("interpolation", "bilinear")}
