"""The plain PyTorch pipeline the engine is measured against: what a careful user writes by hand.

A torchvision-style ``Dataset`` turning one image at a time into a PIL image
and through ``transforms`` (grey to RGB, resize, ToTensor, Normalize), a
``DataLoader`` with worker processes, the model in NCHW, one training loop:
Adam, ReduceLROnPlateau on the validation loss, the best epoch's weights kept,
then the test split with scikit-learn's metrics. It trains the same thing as
the engine: the same footwear split (train / val / test, seed 42), the same
EfficientNet-Lite0 weights and head, the same trainable layers and learning
rates per strategy, the frozen layers' BatchNorm in eval mode, the same batch
size. Nothing of the engine's pipeline is used: no cache, no activation
cache, no batched device transforms, no allocator or memory-format choices.

    python bench/plain_pipeline.py --strategy frozen --epochs 5 [--image-size 64] [--threads 2] [--workers 2]

Prints one JSON line: wall and CPU seconds per phase, test accuracy and F1.
``bench/train_throughput.py`` runs it next to the engine.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

T_START = time.time()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402


class ArrayImages(Dataset):
    """uint8 (N, C, H, W) arrays served one PIL image at a time through torchvision transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: int, mean, std):
        self.x, self.y = x, y
        self.tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                      transforms.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.x[i]
        pil = Image.fromarray(img[0]) if img.shape[0] == 1 else Image.fromarray(img.transpose(1, 2, 0))
        return self.tf(pil.convert("RGB")), int(self.y[i])


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def evaluate(model, loader, device) -> tuple[float, np.ndarray, np.ndarray]:
    model.eval()
    losses, preds, labels = 0.0, [], []
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb.to(device))
            losses += torch.nn.functional.cross_entropy(logits, yb.to(device), reduction="sum").item()
            preds.append(logits.argmax(1).cpu().numpy())
            labels.append(yb.numpy())
    y = np.concatenate(labels)
    return losses / len(y), np.concatenate(preds), y


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", default="frozen", choices=["frozen", "partial", "full"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    device = torch.device(args.device)
    phases: dict[str, float] = {"startup": time.time() - T_START}

    t = time.perf_counter()
    from sklearn.metrics import accuracy_score, f1_score

    from engine.config import TrainConfig
    from engine.data import load_dataset
    from engine.models import build_classifier, norm_config
    from engine.strategies import apply_plan, layer_groups, plan, set_train_mode
    from engine.weights import load_backbone_weights

    phases["startup"] += time.perf_counter() - t
    t = time.perf_counter()
    splits = load_dataset("footwear", val_fraction=0.1, seed=42, train_limit=args.train_limit)
    n_classes = len(splits.classes)
    phases["data"] = time.perf_counter() - t

    t = time.perf_counter()
    model = build_classifier("efficientnet_lite0", "seed", n_classes)
    weights = load_backbone_weights(model.backbone, "efficientnet_lite0", "pretrained", "fail")
    model.to(device)
    cfg = TrainConfig(strategy=args.strategy)
    groups = layer_groups(model.backbone)
    optimizer = torch.optim.Adam(apply_plan(model, groups, plan(cfg, len(groups))))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=3)
    norm = norm_config(model.backbone)

    def loader(split, shuffle):
        ds = ArrayImages(split.x.numpy(), split.y.numpy(), args.image_size, norm["mean"], norm["std"])
        return DataLoader(ds, batch_size=args.batch_size, shuffle=shuffle, num_workers=args.workers,
                          persistent_workers=args.workers > 0)

    train_loader, val_loader, test_loader = loader(splits.train, True), loader(splits.val, False), loader(splits.test, False)
    phases["model"] = time.perf_counter() - t

    t = time.perf_counter()
    best_loss, best_state, epochs = float("inf"), None, []
    for epoch in range(1, args.epochs + 1):
        t_epoch = time.perf_counter()
        set_train_mode(model)
        for xb, yb in train_loader:
            loss = torch.nn.functional.cross_entropy(model(xb.to(device)), yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_loss, preds, labels = evaluate(model, val_loader, device)
        scheduler.step(val_loss)
        if val_loss < best_loss:
            best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
        epochs.append({"epoch": epoch, "val_loss": val_loss, "val_acc": float((preds == labels).mean()),
                       "seconds": time.perf_counter() - t_epoch})
    phases["train"] = time.perf_counter() - t

    t = time.perf_counter()
    model.load_state_dict(best_state)
    _, preds, labels = evaluate(model, test_loader, device)
    phases["test"] = time.perf_counter() - t
    print(json.dumps({
        "pipeline": "plain", "strategy": args.strategy, "epochs": epochs, "phases": phases,
        "total_seconds": time.time() - T_START, "cpu_seconds": cpu_seconds(),
        "accuracy": accuracy_score(labels, preds), "f1_macro": f1_score(labels, preds, average="macro"),
        "weights": weights.get("description", ""), "train": len(splits.train), "val": len(splits.val),
        "test": len(splits.test),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
