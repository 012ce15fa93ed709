"""BatchNorm for fine-tuning: dead channels of a pretrained net retired before training.

Pretrained nets carry channels their training switched off: the real ImageNet
EfficientNet-Lite0 has 130 BatchNorm channels whose running variance is 0
(their conv weights are about 1e-7). In eval mode such a channel divides noise
by sqrt(eps) (x316 at eps 1e-5); in train mode its gradient is amplified the
same way, so fine-tuning wakes it up, grows large activations and leaves the
model ill-conditioned (ONNX parity failed at 2.4e-3 after ``full``). Retiring
it makes it what the pretrained net already computes, a constant: the conv
weights feeding it and its BatchNorm scale are set to 0, its statistics to
mean 0 / variance 1, so it outputs its shift exactly and no gradient reaches it.

``train.bn = "frozen"`` (``engine.strategies.set_train_mode``) also keeps
every BatchNorm's pretrained statistics during training.
"""

from __future__ import annotations

import torch
from torch import nn

DEAD_VAR = 1e-8  # a running variance at or below this marks a dead channel


@torch.no_grad()
def retire_dead_channels(module: nn.Module) -> int:
    """Retire every BatchNorm channel with running variance <= DEAD_VAR; returns how many."""
    retired = 0
    conv: nn.Module | None = None
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            conv = m
            continue
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or m.running_var is None:
            continue
        dead = (m.running_var <= DEAD_VAR).nonzero().flatten()
        if len(dead):
            if conv is not None and conv.out_channels == m.num_features:  # the conv that feeds it (timm's order)
                conv.weight[dead] = 0
                if conv.bias is not None:
                    conv.bias[dead] = 0
            if m.weight is not None:
                m.weight[dead] = 0
            m.running_mean[dead] = 0
            m.running_var[dead] = 1
            retired += len(dead)
        conv = None
    return retired


def live_zero_var_channels(state: dict[str, torch.Tensor]) -> int:
    """BatchNorm channels in a state dict with running variance <= DEAD_VAR that still have a non-zero scale
    (a retired channel may have variance 0 after training in train mode: it is the constant it was made)."""
    count = 0
    for key, var in state.items():
        if key.endswith("running_var"):
            scale = state.get(key[: -len("running_var")] + "weight")
            dead = var <= DEAD_VAR
            count += int((dead & (scale != 0)).sum()) if scale is not None else int(dead.sum())
    return count
