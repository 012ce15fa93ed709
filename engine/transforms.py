"""Batch transforms on the training device: uint8 NCHW in, normalised float out.

Datasets stay as uint8 tensors on the device; resizing, augmentation and
normalisation happen a batch at a time there, never per image in PIL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.preprocess import INTERPOLATIONS, antialias

INTERPOLATION = INTERPOLATIONS[0]  # the only one a checkpoint can name (engine.preprocess)


def preprocess(x: torch.Tensor, image_size: int, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W), C in {1, 3} -> float (N, 3, S, S): step 2 of ``engine.preprocess`` in torch.

    /255, grey repeated to RGB, bilinear resize (antialiased when the height or
    the width shrinks), (x - mean) / std. ONNX parity and ``predict``'s numpy
    twin (``engine.preprocess.input_array``) depend on exactly this.
    """
    return prepare_batch(x, image_size, mean, std)


def augment(x: torch.Tensor, generator: torch.Generator, pad_frac: float = 0.125, jitter: float = 0.2,
            flip: bool = True) -> torch.Tensor:
    """Per-sample random crop (pad + shift), horizontal flip (``flip``) and colour jitter on a float batch in [0,1].

    Applied after resizing, before normalisation; every sample draws its own
    parameters from ``generator`` (on the batch's device) so runs are seeded.
    """
    n, _, h, w = x.shape
    dev = x.device
    if flip:
        mirrored = torch.rand(n, device=dev, generator=generator) < 0.5
        x = torch.where(mirrored.view(n, 1, 1, 1), x.flip(-1), x)
    # crop: reflect-pad then take a shifted window, one shift per sample
    pad = max(1, int(round(h * pad_frac)))
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h, device=dev).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w, device=dev).view(1, w))  # (n, w)
    idx_r = rows.view(n, 1, h, 1).expand(n, x.shape[1], h, padded.shape[-1])
    x = padded.gather(2, idx_r)
    idx_c = cols.view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    x = x.gather(3, idx_c)
    # colour jitter: brightness, contrast, saturation
    def factor():
        return 1.0 + (torch.rand(n, 1, 1, 1, device=dev, generator=generator) * 2 - 1) * jitter

    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * factor() + grey
    return x.clamp_(0.0, 1.0)


def prepare_batch(x: torch.Tensor, image_size: int, mean, std,
                  generator: torch.Generator | None = None, policy=None) -> torch.Tensor:
    """``preprocess``, with augmentation when training.

    ``policy`` (an ``engine.augment.AugmentPolicy``) hooks in at the uint8 batch, after the resize and after
    normalising; without one, a ``generator`` alone applies ``augment`` between resize and normalisation.
    """
    if policy is not None:
        x = policy.on_uint8(x)
    x = x.to(torch.float32) / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    if (h, w) != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode=INTERPOLATION, align_corners=False,
                          antialias=antialias(h, w, image_size))
    if policy is not None:
        x = policy.on_float(x, generator)
    elif generator is not None:
        x = augment(x, generator)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    return x if policy is None else policy.on_normalised(x)
