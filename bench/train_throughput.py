"""Training throughput: the engine's pipeline vs a plain DataLoader + per-image transforms.

Both train the same model on the same images for the same number of epochs in
this one process, and the script prints img/s for each and their ratio, with
device and versions. Two cases:

- ``full``: every layer trains, so only the input pipeline differs (uint8 on
  the device, batched resize/normalise) from torchvision's PIL transforms.
- ``frozen``: head only; the engine computes backbone features once
  (engine.feature_cache) while the plain pipeline runs the backbone every epoch.

    python bench/train_throughput.py [--model efficientnet_lite0] [--size 64] [--n 1024] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from engine.config import TrainConfig  # noqa: E402
from engine.data import load_dataset  # noqa: E402
from engine.feature_cache import SplitModel, forward_units, run_prefix, split_point  # noqa: E402
from engine.models import build_classifier, norm_config  # noqa: E402
from engine.strategies import apply_plan, layer_groups, plan  # noqa: E402
from engine.transforms import preprocess  # noqa: E402


class PILDataset(Dataset):
    """The usual way: one PIL image at a time through torchvision transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: int, mean, std):
        self.x, self.y = x, y
        self.tf = transforms.Compose([
            transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = Image.fromarray(self.x[i].squeeze(0)).convert("RGB")
        return self.tf(img), int(self.y[i])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make(model_name, strategy, n_classes, device):
    torch.manual_seed(0)
    m = build_classifier(model_name, "seed", n_classes).to(device)
    groups = layer_groups(m.backbone)
    opt = torch.optim.Adam(apply_plan(m, groups, plan(TrainConfig(strategy=strategy), len(groups))))
    return m, opt


def train_plain(args, x, y, device, strategy):
    m, opt = make(args.model, strategy, int(y.max()) + 1, device)
    norm = norm_config(m.backbone)
    loader = DataLoader(PILDataset(x.numpy(), y.numpy(), args.size, norm["mean"], norm["std"]),
                        batch_size=args.batch, shuffle=True, num_workers=args.workers)
    m.train()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device)
            loss = torch.nn.functional.cross_entropy(m(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return args.epochs * len(y) / (time.perf_counter() - t0)


def train_engine(args, x, y, device, strategy):
    m, opt = make(args.model, strategy, int(y.max()) + 1, device)
    norm = norm_config(m.backbone)
    xd, yd = x.to(device), y.to(device)
    sync(device)
    t0 = time.perf_counter()
    net = m
    data = None
    if strategy == "frozen":  # what the trainer does: the frozen chain once, then the head
        m.eval()
        units = forward_units(m.backbone, preprocess(xd[:2], args.size, norm["mean"], norm["std"]))
        k = split_point(units)
        data = torch.cat([run_prefix(m, units, k, preprocess(xd[i:i + 256], args.size, norm["mean"], norm["std"]))
                          for i in range(0, len(xd), 256)])
        net = SplitModel(m, units[k:])
    m.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.epochs):
        for idx in torch.randperm(len(yd), generator=gen).split(args.batch):
            idx = idx.to(device)
            xb = data[idx] if data is not None else preprocess(xd[idx], args.size, norm["mean"], norm["std"])
            loss = torch.nn.functional.cross_entropy(net(xb), yd[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return args.epochs * len(y) / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n", type=int, default=1024, help="training images (footwear)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for the plain pipeline")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    device = torch.device(args.device)
    splits = load_dataset("footwear")
    x, y = splits.train.x[: args.n], splits.train.y[: args.n]
    prov = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "timm": timm.__version__,
        "python": platform.python_version(), "model": args.model, "image_size": args.size, "batch": args.batch,
        "images": args.n, "epochs": args.epochs, "plain_workers": args.workers,
    }
    print("provenance:", json.dumps(prov))
    rows = []
    for strategy in ("full", "frozen"):
        plain = train_plain(args, x, y, device, strategy)
        engine = train_engine(args, x, y, device, strategy)
        rows.append({"strategy": strategy, "plain_img_s": plain, "engine_img_s": engine, "ratio": engine / plain})
        print(f"{strategy:7s} plain DataLoader+PIL {plain:8.1f} img/s | engine {engine:8.1f} img/s | "
              f"ratio {engine / plain:5.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"provenance": prov, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
