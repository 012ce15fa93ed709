"""Strategy x recipe on footwear: test accuracy, macro F1 and time, from one run of this script.

Each recipe is a bundle of settings over the same data and backbone (the real
ImageNet EfficientNet-Lite0 by default); each strategy trains under each recipe
through the real engine (one worker process per run, exactly as
``finetune-tui run`` does), in one run store, one after another, so every row
shares the machine's conditions. The script prints a Markdown table with the
provenance (CPU, threads, versions, load average before and after), ready for
BENCHMARKS.md.

Recipes:
- ``seed``: the seed's settings (Adam, ReduceLROnPlateau, the strategy's LR,
  BatchNorm of trainable layers in train mode, no warm-up, no EMA).
- ``modern``: cosine schedule with warm-up, AdamW, EMA of the weights, label
  smoothing 0.1, pretrained BatchNorm statistics, and LRs a fine-tune can move
  (``full`` 3e-4 instead of the seed's 1e-5).
- ``warmup``: ``modern`` plus a head-only warm-up before the backbone trains
  (what ``two_stage`` does by default, here given to every strategy).

    python bench/recipes.py [--epochs 8] [--image-size 64] [--train-limit 0] [--threads 2]
                            [--strategies frozen,partial,full,gradual,discriminative,two_stage]
                            [--recipes seed,modern,warmup] [--runs DIR]

An idle machine matters: the script refuses nothing, but it records the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import GridConfig  # noqa: E402
from engine.orchestrator import Orchestrator, prepare  # noqa: E402
from engine.presets import get_preset  # noqa: E402
from engine.store import RunStore  # noqa: E402

STRATEGIES = ("frozen", "partial", "full", "gradual", "discriminative", "two_stage")

# settings per recipe; strategy-specific LRs in "lr" (0 = the strategy's default)
MODERN = {"train.optimizer": "adamw", "train.weight_decay": 0.01, "train.schedule": "cosine",
          "train.warmup_epochs": 0.3, "train.ema": True, "train.label_smoothing": 0.1, "train.bn": "frozen",
          "train.head_epochs": 0}
RECIPES: dict[str, dict] = {
    "seed": {"settings": {"train.optimizer": "adam", "train.schedule": "plateau", "train.bn": "train",
                          "train.head_epochs": 0, "train.ema": False, "train.label_smoothing": 0.0},
             "lr": {}},
    "modern": {"settings": MODERN, "lr": {"partial": 3e-4, "full": 3e-4, "two_stage": 5e-4}},
    "warmup": {"settings": {**MODERN, "train.head_epochs": 3},
                    "lr": {"partial": 3e-4, "full": 3e-4, "two_stage": 5e-4}},
}


def grid_for(recipe: str, args) -> GridConfig:
    spec = RECIPES[recipe]
    base = {"name": f"bench-{recipe}", "datasets": args.dataset, "backbones": args.backbone,
            "strategies": args.strategies, "concurrency": 1, "data.image_size": args.image_size,
            "data.train_limit": args.train_limit, "train.epochs": args.epochs, "train.patience": args.epochs,
            "train.threads": args.threads, "model.weights": args.weights, "model.head": "seed"}
    overrides = {s: {"train.lr": lr} for s, lr in spec["lr"].items() if s in args.strategies.split(",")}
    # a bare grid (not the demo's overrides): the recipe's settings, then its per-strategy LRs
    return GridConfig.from_layers(({**base, **spec["settings"], "overrides": overrides}, f"recipe {recipe}"),
                                  start=GridConfig())


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="footwear")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="pretrained", help="pretrained (default), random, or a file")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--train-limit", type=int, default=0, help="training images (0 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="", help="run store for the bench (default: a temporary folder)")
    args = parser.parse_args(argv)
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    root = Path(args.runs or tempfile.mkdtemp(prefix="bench-recipes-"))
    get_preset("seed")  # the registries load (and the presets' checks run) before any time is taken
    load_before, t0 = load(), time.time()
    rows = []
    for recipe in recipes:
        grid = grid_for(recipe, args)
        gdir = prepare(grid, root)
        Orchestrator(gdir).run()
        for rec in RunStore(root).runs(grid.name):
            results = rec.dir.results() or {}
            rows.append({"recipe": recipe, "strategy": rec.summary.strategy, "status": rec.summary.status,
                         "accuracy": results.get("accuracy"), "f1": results.get("f1_macro"),
                         "train_s": results.get("train_seconds"), "epochs": results.get("epochs_run"),
                         "cpu_s": results.get("cpu_seconds"),
                         "wall_s": (rec.summary.finished_at or 0) - (rec.summary.started_at or 0),
                         "run": str(rec.path)})
    import timm
    import torch

    print(f"## Strategy x recipe on {args.dataset} (`python bench/recipes.py --epochs {args.epochs} "
          f"--image-size {args.image_size} --train-limit {args.train_limit} --threads {args.threads}`)\n")
    print(f"Provenance: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} "
          f"threads per run, one run at a time; torch {torch.__version__}, timm {timm.__version__}, Python "
          f"{platform.python_version()}; {args.backbone} ({args.weights}), {args.image_size} px, batch 64, "
          f"{args.train_limit or 'all'} training images, at most {args.epochs} epochs; load average "
          f"{load_before} before, {load()} after; {time.time() - t0:.0f} s in all. Time = training seconds "
          f"(the epochs) / the run's wall time from start to finish (data, features, test included) / the "
          f"worker's CPU seconds (user + system, all threads: what the run cost, whatever else the machine "
          f"was doing).\n")
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    header = "| strategy | " + " | ".join(f"{r} acc | {r} F1 | {r} time" for r in recipes) + " |"
    print(header)
    print("|" + "---|" * (1 + 3 * len(recipes)))
    for s in strategies:
        cells = []
        for recipe in recipes:
            row = next((r for r in rows if r["recipe"] == recipe and r["strategy"] == s), None)
            if row is None or row["accuracy"] is None:
                cells += [row["status"] if row else "-", "", ""]
                continue
            cpu = f" / {row['cpu_s']:.0f}" if row.get("cpu_s") is not None else ""
            cells += [f"{row['accuracy']:.4f}", f"{row['f1']:.4f}", f"{row['train_s']:.0f} / {row['wall_s']:.0f}{cpu} s"]
        print(f"| {s} | " + " | ".join(cells) + " |")
    (root / "bench_recipes.json").write_text(json.dumps(rows, indent=1))
    print(f"\nRun folders and bench_recipes.json: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
