"""The study's only calls into the engine's data path, models, weights, preprocessing and feature cache.

Kept in one small module on purpose: the data path and the feature cache are
being reworked, and whoever changes them re-points these few functions and
nothing else of the study. Everything here is what training uses too, so a
study sees exactly the images and the preprocessing a run sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.config import StudyConfig
from engine.data import DatasetSplits, open_dataset
from engine.data.recipes import draw_balanced
from engine.store import DatasetCacheDir
from engine.transforms import preprocess

Step = Callable[[int, int], None]  # (images done, images in all); may raise to cancel


def load_splits(name: str, cfg: StudyConfig, cache: DatasetCacheDir | None = None) -> tuple[DatasetSplits, str]:
    """The dataset as training sees it (same recipe, same test split); train limited, class-balanced, seeded;
    and how the dataset cache served it ("built", "hit", "waited"; "off" without a cache).

    ``cache``: the run store's dataset cache, so a study decodes a dataset once and reuses what the store's
    runs decoded already (same bits as without it: ``engine.data.load_dataset``).
    """
    opened = open_dataset(name, cfg.data_root, seed=cfg.seed, download=cfg.download, image_size=cfg.image_size,
                          train_limit=cfg.train_limit, cache=cache)
    return opened.materialise(), str(opened.arrays.notes.get("cache", "off"))


def balanced_positions(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted positions of ``n`` items of ``y`` spread evenly over its classes (the data layer's draw)."""
    labels = tuple(int(c) for c in np.unique(y))
    if n <= 0 or n >= len(y):
        return np.arange(len(y), dtype=np.int64)
    return draw_balanced(np.asarray(y), labels, n, np.random.default_rng(seed))


def device(spec: str) -> torch.device:
    from engine.device import resolve_device  # the run's own rule (auto, cpu, cuda, cuda:N; checked)

    return resolve_device(spec)


@dataclass
class Backbone:
    """A classifier's backbone ready to give pooled features, with the input it expects."""

    model: torch.nn.Module  # engine.models.Classifier, eval mode
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # where its weights came from, in words
    pretrained: bool


def pretrained_backbone(name: str, image_size: int, on_missing: str) -> Backbone:
    """A backbone with its pretrained weights (engine.weights: offline package, then the hub).

    ``on_missing``: "fail" or "skip" raise WeightsError (the caller skips), "random" goes on from random init.
    """
    from engine.models import build_classifier, norm_config
    from engine.weights import load_backbone_weights

    model = build_classifier(name, "linear", 2)  # the head is never used: features come from the backbone
    record = load_backbone_weights(model.backbone, name, "pretrained", "random" if on_missing == "random" else "fail")
    norm = norm_config(model.backbone)
    return Backbone(model.eval(), image_size, tuple(norm["mean"]), tuple(norm["std"]), record["description"],
                    bool(record["pretrained"]))


def run_backbone(checkpoint: Path) -> tuple[Backbone, dict]:
    """A finished run's fine-tuned classifier from its best checkpoint, with the checkpoint's metadata."""
    from engine.checkpoint import load_classifier

    model, meta = load_classifier(checkpoint)
    return (Backbone(model, int(meta["image_size"]), tuple(meta["mean"]), tuple(meta["std"]),
                     f"fine-tuned (run {meta.get('run_id', '')}, epoch {meta.get('epoch', '?')})", True), meta)


def prepare(x: torch.Tensor, image_size: int, mean, std) -> torch.Tensor:
    """uint8 NCHW -> the normalised float batch a model is fed (engine.transforms, as in training)."""
    return preprocess(x, image_size, mean, std)


def _feature_fn(model: torch.nn.Module, sample: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Pooled features through the feature cache's recorded module chain when the backbone is one
    (the frozen-backbone path training uses), else the classifier's own ``features``."""
    from engine.feature_cache import forward_units, run_prefix

    units = forward_units(model.backbone, sample)
    if units is None:
        return model.features
    return lambda x: run_prefix(model, units, len(units), x)


@torch.inference_mode()
def extract(backbone: Backbone, x: torch.Tensor, batch_size: int, dev: torch.device,
            step: Step | None = None) -> tuple[np.ndarray, float]:
    """Pooled features of uint8 images ``x`` (N, C, H, W), in batches on ``dev``; and the seconds it took.

    Resize and normalisation run per batch on the device; channels-last memory (faster for these
    convolutions on CPU and GPU alike) and inference mode. Time covers preprocessing and the model.
    """
    model = backbone.model.to(dev).eval().to(memory_format=torch.channels_last)

    def batch(i: int) -> torch.Tensor:
        xb = prepare(x[i: i + batch_size].to(dev), backbone.image_size, backbone.mean, backbone.std)
        return xb.contiguous(memory_format=torch.channels_last)

    fn = _feature_fn(model, batch(0)[:2])
    outs = []
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        outs.append(fn(batch(i)).float().cpu())
        if step is not None:
            step(min(i + batch_size, len(x)), len(x))
    seconds = time.perf_counter() - t0
    return torch.cat(outs).numpy(), seconds


def versions() -> dict:
    from engine.trainer import versions as run_versions

    return run_versions()
