"""Compute the frozen front of the network once, train only what follows.

timm CNNs run ``forward_features`` as a chain of modules (stem, blocks, head
conv). We record that chain once with hooks and check that composing it
reproduces ``forward_features``; then every leading unit without trainable
parameters (BatchNorm in eval) is a pure function of the image, so its output
is cached for the train and val sets (without augmentation) and each epoch runs
only the trainable tail. With the whole backbone frozen this is the classic
"features computed once"; with ``partial`` it skips most of the network too.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def forward_units(backbone: nn.Module, sample: torch.Tensor) -> list[nn.Module] | None:
    """The modules ``forward_features`` chains, in call order, or None if it isn't a plain chain."""
    candidates: list[nn.Module] = []

    def expand(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.Sequential):
                expand(child)
            else:
                candidates.append(child)

    expand(backbone)
    called: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: called.append(mod)) for m in candidates]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            ref = backbone.forward_features(sample)
            units = list(dict.fromkeys(called))  # first-call order, once each
            for h in hooks:
                h.remove()
            hooks = []
            x = sample
            for u in units:
                x = u(x)
            ok = x.shape == ref.shape and torch.allclose(x, ref, atol=1e-5, rtol=1e-4)
    except Exception as exc:  # odd signatures (token models etc.): no chain
        log.debug("forward_features is not a module chain: %s", exc)
        ok = False
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    return units if ok and units else None


class SplitModel(nn.Module):
    """The trainable tail of a Classifier over cached inputs: tail units -> pool -> head."""

    def __init__(self, classifier: nn.Module, tail: list[nn.Module]):
        super().__init__()
        self.tail = nn.ModuleList(tail)
        self.pool = classifier.pool
        self.head = classifier.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:  # cached pooled features: the whole backbone was frozen
            return self.head(x)
        for u in self.tail:
            x = u(x)
        return self.head(self.pool(x))


def split_point(units: list[nn.Module]) -> int:
    """Number of leading units with no trainable parameter."""
    k = 0
    for u in units:
        if any(p.requires_grad for p in u.parameters()):
            break
        k += 1
    return k


@torch.no_grad()
def run_prefix(classifier: nn.Module, units: list[nn.Module], k: int, x: torch.Tensor) -> torch.Tensor:
    """Output of the first ``k`` units (pooled features when k covers the whole chain)."""
    for u in units[:k]:
        x = u(x)
    if k == len(units):
        x = classifier.pool(x)
    return x
