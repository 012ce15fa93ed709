"""Classifier heads: a registry of builders ``(in_features, num_classes) -> nn.Module``.

Importing this module does not import torch (the config validates ``model.head``
against these names); each builder imports it when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from engine.registry import Registry

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class HeadInfo:
    name: str
    build: Callable[[int, int], "nn.Module"]  # (pooled feature size, classes) -> head module
    description: str


HEADS: Registry[HeadInfo] = Registry("head")


def register_head(name: str, *, help: str):
    """Decorator: ``@register_head("linear", help=...)`` over a ``(in_features, num_classes)`` builder."""

    def deco(fn: Callable[[int, int], "nn.Module"]):
        HEADS.add(name, HeadInfo(name, fn, help))
        return fn

    return deco


def build_head(kind: str, in_features: int, num_classes: int) -> "nn.Module":
    return HEADS[kind].build(in_features, num_classes)


@register_head("seed", help="the seed's MLP: Dense(256, relu), Dropout(0.5), Dense(128, relu), Dropout(0.3), Dense(n)")
def seed_head(in_features: int, num_classes: int) -> "nn.Module":
    from torch import nn

    return nn.Sequential(
        nn.Linear(in_features, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(256, 128),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(128, num_classes),
    )


@register_head("linear", help="one Dense(n) on the pooled features")
def linear_head(in_features: int, num_classes: int) -> "nn.Module":
    from torch import nn

    return nn.Sequential(nn.Linear(in_features, num_classes))
