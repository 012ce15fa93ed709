"""Feature extraction for a study: the engine's path against a plain per-image loop, same backbone and size.

- ``engine``: what ``finetune-tui study`` runs (``engine.study.adapter.extract``): uint8 images on the
  device, resized and normalised a batch at a time (``engine.transforms``), channels-last, inference mode,
  pooled features through the feature cache's module chain.
- ``plain``: the usual loop: one PIL image at a time through torchvision transforms (resize, grey to RGB,
  to tensor, normalise), one forward pass per image under ``torch.no_grad``.

Both run in this one process on the same images, after a warm-up; the script prints img/s for each,
their ratio, how far the two paths' features are apart, and the provenance (device, threads, versions,
load average).

    python bench/study_extraction.py [--model efficientnet_lite0] [--size 64] [--n 1000] [--batch 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

from engine.config import StudyConfig  # noqa: E402
from engine.study import adapter  # noqa: E402


def plain_loop(backbone: adapter.Backbone, x: np.ndarray) -> tuple[np.ndarray, float]:
    """One image at a time: PIL -> torchvision transforms -> model, the way a notebook would do it."""
    tf = transforms.Compose([
        transforms.Resize((backbone.image_size, backbone.image_size),
                          interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.Grayscale(num_output_channels=3) if x.shape[1] == 1 else transforms.Lambda(lambda im: im),
        transforms.ToTensor(), transforms.Normalize(backbone.mean, backbone.std)])
    model = backbone.model.eval().to(memory_format=torch.contiguous_format)
    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for img in x:
            pil = Image.fromarray(img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0)))
            out.append(model.features(tf(pil).unsqueeze(0))[0].numpy())
    return np.stack(out), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=1000, help="test images extracted by each path")
    ap.add_argument("--batch", type=int, default=128, help="the engine path's batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes of the engine path (median kept)")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    cfg = StudyConfig(datasets=(args.dataset,), data_root=args.data_root, image_size=args.size, train_limit=1)
    splits, _ = adapter.load_splits(args.dataset, cfg)
    x = splits.test.x[: args.n]
    dev = torch.device("cpu")
    backbone = adapter.pretrained_backbone(args.model, args.size, "fail")
    load_before = os.getloadavg()

    # warm-up both paths (allocator, oneDNN kernels, the feature chain's check)
    adapter.extract(backbone, x[: args.batch], args.batch, dev)
    plain_loop(backbone, x[:16].numpy())

    engine_runs = []
    for _ in range(args.repeats):
        feats, seconds = adapter.extract(backbone, x, args.batch, dev)
        engine_runs.append(seconds)
    engine_s = statistics.median(engine_runs)
    plain_feats, plain_s = plain_loop(backbone, x.numpy())

    cos = (feats * plain_feats).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(plain_feats, axis=1))
    rel = np.abs(feats - plain_feats).max() / np.abs(plain_feats).max()
    result = {
        "model": args.model, "weights": backbone.weights, "dataset": args.dataset, "image_size": args.size,
        "n": len(x), "batch": args.batch, "repeats": args.repeats,
        "engine_img_per_s": len(x) / engine_s, "engine_seconds": engine_runs,
        "plain_img_per_s": len(x) / plain_s, "plain_seconds": plain_s,
        "speedup": plain_s / engine_s,
        "feature_cosine_min": float(cos.min()), "feature_cosine_mean": float(cos.mean()),
        "feature_max_rel_diff": float(rel),
        "device": str(dev), "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "load_avg_before": [round(v, 2) for v in load_before], "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        **adapter.versions(),
    }
    print(f"feature extraction, {args.model} @ {args.size}px, {len(x)} {args.dataset} test images, "
          f"{dev} ({result['cpu']}, {result['threads']} threads), torch {result['torch']}")
    print(f"  engine path (batch {args.batch}, median of {args.repeats}): {result['engine_img_per_s']:8.1f} img/s")
    print(f"  plain per-image loop (PIL transforms):        {result['plain_img_per_s']:8.1f} img/s")
    print(f"  speedup: {result['speedup']:.2f}x   features agree: cosine min {result['feature_cosine_min']:.4f}, "
          f"mean {result['feature_cosine_mean']:.5f} (PIL's and torch's antialiased resize differ slightly)")
    print(f"  load average before/after: {result['load_avg_before']} / {result['load_avg_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
