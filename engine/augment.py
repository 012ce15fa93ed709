"""The training batch's augmentation policy, on the device, from the config.

A batch goes through, in order (``engine.transforms.prepare_batch`` calls the hooks):

1. ``on_uint8``: RandAugment or TrivialAugment (torchvision.transforms.v2, which
   works on batched uint8 tensors on any device) at the stored size, before the
   resize. A v2 transform draws one operation per call, so the batch is split
   into chunks of ``CHUNK`` images, each drawing its own.
2. ``on_float``: the crop, flip (unless ``data.flip`` is off) and colour jitter of ``data.augment``
   (``engine.transforms.augment``, per image, from the run's augment generator).
3. ``on_normalised``: random erasing (timm's ``RandomErasing``, per image).
4. ``mix``: Mixup / CutMix (timm's ``Mixup``), which turns the labels into soft
   targets; the loss is then the soft-target cross-entropy.

Every draw comes from an RNG the resume point holds (torch's, Python's,
numpy's, the augment generator), so a resumed run sees the same batches.
Evaluation never augments; ``train.tta`` averages the test predictions over each
image and its mirror image (``tta_probs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from engine.config import DataConfig, TrainConfig

CHUNK = 8  # images per RandAugment/TrivialAugment draw


class AugmentPolicy:
    def __init__(self, data: "DataConfig", train: "TrainConfig", num_classes: int, device: torch.device):
        from timm.data import Mixup
        from timm.data.random_erasing import RandomErasing
        from torchvision.transforms import v2

        self.crop_flip_jitter = data.augment
        self.flip = data.flip
        self.auto = None
        if data.auto_augment == "randaugment":
            self.auto = v2.RandAugment(num_ops=2, magnitude=data.augment_magnitude)
        elif data.auto_augment == "trivialaugment":
            self.auto = v2.TrivialAugmentWide()
        self.erasing = None
        if data.random_erasing > 0:
            # "pixel": erased boxes get normal noise, which is what a normalised image looks like on average
            self.erasing = RandomErasing(probability=data.random_erasing, mode="pixel", device=str(device))
        self.mixup = None
        if train.mixup > 0 or train.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=train.mixup, cutmix_alpha=train.cutmix, prob=train.mix_prob,
                               switch_prob=0.5, mode="batch", label_smoothing=train.label_smoothing,
                               num_classes=num_classes)
        self.num_classes = num_classes
        self.smoothing = train.label_smoothing

    @property
    def changes_inputs(self) -> bool:
        """Training inputs differ from epoch to epoch: no activation cache can stand in for them."""
        return bool(self.crop_flip_jitter or self.auto or self.erasing or self.mixup)

    @property
    def soft_targets(self) -> bool:
        return self.mixup is not None

    def on_uint8(self, x: torch.Tensor) -> torch.Tensor:
        if self.auto is None:
            return x
        return torch.cat([self.auto(chunk) for chunk in x.split(CHUNK)])

    def on_float(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.crop_flip_jitter or generator is None:
            return x
        from engine.transforms import augment

        return augment(x, generator, flip=self.flip)

    def on_normalised(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.erasing is None else self.erasing(x)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, soft targets); an odd-sized batch (timm's Mixup pairs images) keeps its images."""
        from timm.data.mixup import mixup_target

        if len(x) % 2 == 0:
            return self.mixup(x, y)
        return x, mixup_target(y, self.num_classes, lam=1.0, smoothing=self.smoothing)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against soft targets (timm's SoftTargetCrossEntropy), class-weighted when ``weight`` is given."""
    from timm.loss import SoftTargetCrossEntropy

    if weight is None:
        return SoftTargetCrossEntropy()(logits, target)
    # weighted like nn.CrossEntropyLoss: each image counts by the weight of its (mixed) class
    w = target @ weight
    return (-(target * F.log_softmax(logits, dim=-1)).sum(-1) * w).sum() / w.sum()


def tta_logits(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Log of the mean softmax over the image and its mirror image (so softmax(...) is that mean)."""
    p = (torch.softmax(net(x).float(), 1) + torch.softmax(net(x.flip(-1)).float(), 1)) / 2
    return p.clamp_min(1e-12).log()
