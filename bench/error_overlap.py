"""Which test images a set of runs gets wrong, and how far averaging them goes.

Reads each run's ``test_probs.npz`` (the run store's record of its test split),
checks that every run scored the same test images, and prints a Markdown
table: each run's errors, how many images all of them / at least half of them
/ any of them get wrong, and the best accuracy that averaging the softmax
probabilities of k of them reaches (every combination up to ``--exhaustive``
runs, greedy past that). With ``--png`` it draws the test images most runs
get wrong, titled true > the wrong class most runs pick and the share of runs wrong.

It answers whether a recipe's remaining errors are its own (other recipes get
them right, so averaging helps) or the data's (every recipe misses them).

    python bench/error_overlap.py RUN_OR_GRID_DIR [...] [--png hard.png] [--top 64] [--data-root data]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.store.run_dir import RunDir  # noqa: E402


def run_dirs(paths: list[str]) -> list[Path]:
    """Each path that holds test_probs.npz, or the run folders under a grid or store folder that do."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / RunDir.PROBS).exists():
            found.append(p)
        else:
            found += sorted(q.parent for q in p.rglob(RunDir.PROBS) if "export" not in q.parts)
    return list(dict.fromkeys(found))


def load(paths: list[Path]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray | None]:
    """Names, probabilities (R, N, C), labels (N,) and source index (N,) of runs over one test split."""
    probs, labels, index = [], None, None
    for path in paths:
        tp = RunDir(path).probs()
        if labels is None:
            labels, index = tp.labels, tp.index
        elif len(tp.labels) != len(labels) or not np.array_equal(tp.labels, labels) or (
                index is not None and tp.index is not None and not np.array_equal(tp.index, index)):
            raise SystemExit(f"{path}: a different test split from {paths[0]}; compare runs of one dataset")
        probs.append(tp.probs)
    return short_names(paths), np.stack(probs), labels, index


def short_names(paths: list[Path]) -> list[str]:
    """Each run's path below the folders they share, without the run id when every run has the same one."""
    if len(paths) == 1:
        return [paths[0].name]
    base = Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    rel = [p.resolve().relative_to(base) for p in paths]
    if len({r.name for r in rel}) == 1 and all(len(r.parts) > 1 for r in rel):
        rel = [r.parent for r in rel]
    return [str(r) for r in rel]


def ensemble_accuracy(probs: np.ndarray, labels: np.ndarray, members) -> float:
    return float((probs[list(members)].mean(0).argmax(1) == labels).mean())


def best_ensembles(probs: np.ndarray, labels: np.ndarray, exhaustive: int) -> list[tuple[int, float, tuple]]:
    """(k, accuracy, members) of the best average of k runs, for k = 1..R."""
    r = len(probs)
    out = []
    if r <= exhaustive:
        for k in range(1, r + 1):
            acc, members = max((ensemble_accuracy(probs, labels, c), c) for c in itertools.combinations(range(r), k))
            out.append((k, acc, members))
        return out
    members: tuple = ()
    for k in range(1, r + 1):  # greedy: add the run that helps most
        acc, add = max((ensemble_accuracy(probs, labels, members + (i,)), i) for i in range(r) if i not in members)
        members += (add,)
        out.append((k, acc, members))
    return out


def draw(path: Path, images: np.ndarray, order: np.ndarray, labels, majority, share, classes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 8
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order):
        img = images[i]
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{classes[labels[i]][:10]}>{classes[majority[i]][:10]}\n{share[i]:.0%} wrong", fontsize=7)
    fig.suptitle("test images most runs get wrong: true > the wrong class most runs pick", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the suptitle
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="run folders, or grid/store folders to search for finished runs")
    ap.add_argument("--exhaustive", type=int, default=12, help="try every combination up to this many runs")
    ap.add_argument("--png", help="draw the most-missed test images here")
    ap.add_argument("--top", type=int, default=64, help="images drawn")
    ap.add_argument("--data-root", default="data", help="tried before the runs' own data_root")
    args = ap.parse_args(argv)

    paths = run_dirs(args.paths)
    if not paths:
        raise SystemExit(f"no finished run (test_probs.npz) under {', '.join(args.paths)}")
    names, probs, labels, index = load(paths)
    wrong = probs.argmax(2) != labels  # (R, N)
    share = wrong.mean(0)
    n = len(labels)
    print(f"{len(names)} runs, {n} test images\n")
    print("| run | errors | test acc |\n|---|---:|---:|")
    for name, w in zip(names, wrong):
        print(f"| {name} | {int(w.sum())} | {1 - w.mean():.4f} |")
    print(f"\nwrong in every run: {int(wrong.all(0).sum())}; in at least half: {int((share >= 0.5).sum())}; "
          f"in any: {int(wrong.any(0).sum())}\n")
    print("Averages of k runs' probabilities, the best k chosen on the test split itself: how far averaging can go,"
          " not an estimate of an ensemble's accuracy.\n")
    print("| runs averaged | best test acc | errors | members |\n|---:|---:|---:|---|")
    for k, acc, members in best_ensembles(probs, labels, args.exhaustive):
        print(f"| {k} | {acc:.4f} | {round((1 - acc) * n)} | {', '.join(names[i] for i in members)} |")

    if args.png:
        from report.images import ImageCache, check_alignment
        from report.loading import load_run_data

        run = load_run_data(paths[0])
        images = ImageCache(args.data_root).get(run.dataset, [run])  # the report's loader and its checks
        problem = check_alignment(images, run)
        if problem:
            raise SystemExit(problem)
        preds = probs.argmax(2)
        # the wrong class the runs that miss an image pick most often
        missed = np.stack([((preds == c) & wrong).sum(0) for c in range(probs.shape[2])])  # (C, N)
        majority = missed.argmax(0)
        order = np.argsort(-share, kind="stable")[:args.top]
        draw(Path(args.png), images.test_x, order[share[order] > 0], labels, majority, share, images.classes)
        print(f"\nwrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
