"""The seed's two from-scratch baselines: a small CNN trained with labels, a conv autoencoder without.

Both are plain torch modules trained briefly on the study's training split
(``study.baseline_epochs``, Adam, seeded) at ``study.baseline_image_size``,
fed the engine's preprocessing (grey repeated to RGB, bilinear resize,
normalised with mean = std = 0.5). Their features are the seed's: the small
CNN's 256-wide dense layer, the autoencoder's 128-wide code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.registry import Registry
from engine.study import adapter

MEAN = STD = (0.5, 0.5, 0.5)
LR = 1e-3
BATCH = 128


@dataclass(frozen=True)
class BaselineInfo:
    name: str
    title: str
    build: Callable[[int, int], nn.Module]  # (n_classes, size) -> module with features() and loss()
    supervised: bool
    description: str


BASELINES: Registry[BaselineInfo] = Registry("baseline")


def register_baseline(name: str, *, title: str, supervised: bool, help: str):
    """Class decorator: the class is built as ``cls(n_classes, size)`` and has ``features`` and ``loss``."""

    def deco(cls):
        BASELINES.add(name, BaselineInfo(name, title, cls, supervised, help))
        return cls

    return deco


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


@register_baseline("small_cnn", title="small CNN (from scratch, supervised)", supervised=True,
                   help="3 conv blocks + a 256-wide dense layer, trained with labels")
class SmallCNN(nn.Module):
    """Three conv blocks (32, 64, 128 channels, each halving the side), a 256-wide dense layer, a classifier."""

    dim = 256

    def __init__(self, n_classes: int, size: int):
        super().__init__()
        self.body = nn.Sequential(_conv_block(3, 32), _conv_block(32, 64), _conv_block(64, 128))
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(128 * (size // 8) ** 2, self.dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(self.dim, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.features(x)), y)


@register_baseline("autoencoder", title="conv autoencoder (from scratch, unsupervised)", supervised=False,
                   help="strided conv encoder to a 128-wide code, trained to reconstruct")
class ConvAutoencoder(nn.Module):
    """Strided convs down to a 128-wide code, transposed convs back; trained on reconstruction (MSE)."""

    dim = 128

    def __init__(self, n_classes: int, size: int):
        super().__init__()
        side = size // 8
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(128 * side * side, self.dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(self.dim, 128 * side * side), nn.ReLU(inplace=True), nn.Unflatten(1, (128, side, side)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # labels unused: unsupervised
        return F.mse_loss(self.decoder(self.encoder(x)), x)


@dataclass
class Trained:
    """A trained baseline, with what its training cost and how it ended."""

    model: nn.Module
    seconds: float
    epochs: int
    final_loss: float


def train(name: str, x: torch.Tensor, y: torch.Tensor, n_classes: int, size: int, epochs: int, seed: int,
          dev: torch.device, step: adapter.Step | None = None) -> Trained:
    """Train baseline ``name`` on uint8 images ``x`` with labels ``y`` (ignored when unsupervised)."""
    info = BASELINES[name]
    torch.manual_seed(seed)
    model = info.build(n_classes, size).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    steps = epochs * math.ceil(n / BATCH)
    done, loss_value = 0, math.nan
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = seen = 0.0
        for i in range(0, n, BATCH):
            idx = order[i: i + BATCH]
            xb = adapter.prepare(x[idx].to(dev), size, MEAN, STD)
            loss = model.loss(xb, y[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            done += 1
            if step is not None:
                step(done, steps)
        loss_value = total / max(seen, 1)
    return Trained(model.eval(), time.perf_counter() - t0, epochs, loss_value)


@torch.inference_mode()
def extract(model: nn.Module, x: torch.Tensor, size: int, batch_size: int, dev: torch.device,
            step: adapter.Step | None = None) -> tuple[np.ndarray, float]:
    """The baseline's features of uint8 images ``x``, batched; and the seconds it took."""
    model = model.to(dev).eval()
    outs = []
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        outs.append(model.features(adapter.prepare(x[i: i + batch_size].to(dev), size, MEAN, STD)).float().cpu())
        if step is not None:
            step(min(i + batch_size, len(x)), len(x))
    return torch.cat(outs).numpy(), time.perf_counter() - t0


def save(model: nn.Module, write: Callable[[Callable[[str], None]], None], meta: dict) -> None:
    """Write the weights as safetensors through ``write(fn)`` (the study folder's atomic writer)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write(lambda tmp: save_file(state, tmp, metadata={k: str(v) for k, v in meta.items()}))


def load(name: str, path, n_classes: int, size: int) -> nn.Module | None:
    """A baseline saved by ``save``; None when the file is missing or doesn't fit (it is retrained then)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        model = BASELINES[name].build(n_classes, size)
        model.load_state_dict(state)
    except (OSError, RuntimeError, ValueError):
        return None
    return model.eval()
