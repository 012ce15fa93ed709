"""The dataset cache and streaming, end to end through ``finetune-tui run``, two things compared per figure.

``second-run``: a 20,000-image folder (synthetic PNGs, 96 px, made here once),
a grid of two runs on it. The runs' ``data`` phase (the dataset opened and its
splits on the device, from the worker's results) is compared between the
first run, which decodes the folder into the cache, and the second, which
reads it; and against the same grid with ``data.cache = false``, where every
run decodes the folder again (what every run did before the cache).

``stream``: a 100,000-image folder (synthetic PNGs, 160 px, ``train/`` and
``test/`` with every 50th image in test), trained at 128 px (test_efficientnet,
strategy full, 2 epochs of ``--train-limit`` images, 2% of train for
validation). Once with ``data.stream = "always"`` (every split read from the
cache batch by batch; this first run decodes the folder into the cache) and
once with ``"never"`` (every split read into memory first): epoch seconds and
the worker's peak RSS (its own ``ru_maxrss``, in results.json). Then the feed
alone over the whole training split (96,040 rows, no train_limit), streamed
and held, each in its own process: seconds per pass (every batch turned into
floats, the trainer's first step) and peak RSS.

    python bench/data_cache.py second-run [--images 20000]
    python bench/data_cache.py stream [--images 100000 --train-limit 1500 --epochs 2]

Folders and run stores go under ``--workdir`` (default /tmp/finetune-bench); the
image folders are kept between invocations (delete them to regenerate).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from train_throughput import load, timed  # noqa: E402  (bench/ is this script's folder)

CLASSES = 10


def _write_range(args: tuple[str, int, int, int, int]) -> int:
    import numpy as np
    from PIL import Image

    folder, start, stop, size, seed, test_every = args
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(start, stop):
        rng = np.random.default_rng(seed + i)
        label = i % CLASSES
        hue = np.array([(label * 37) % 256, (label * 91) % 256, (label * 153) % 256], dtype=np.float32)
        a, b = rng.uniform(-80, 80, size=2)
        img = hue[None, None, :] + a * xx[..., None] + b * yy[..., None]
        (cy, cx), r = rng.uniform(0.2, 0.8, size=2) * size, rng.uniform(0.1, 0.3) * size
        img[((yy * size - cy) ** 2 + (xx * size - cx) ** 2) < r * r] = 255 - hue  # a disc: some structure
        part = "" if not test_every else ("test" if (i // CLASSES) % test_every == 0 else "train")
        out = Path(folder) / part / f"c{label}" / f"{i:06d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out, compress_level=1)
    return stop - start


def make_folder(folder: Path, n: int, size: int, seed: int = 0, test_every: int = 0) -> float:
    """``n`` synthetic PNGs in ``CLASSES`` class folders (kept when already complete); seconds spent.
    ``test_every`` k > 0: ``train/`` and ``test/`` folders, every k-th image in ``test/``."""
    marker, made = folder / ".complete", f"{n} {size}" + (f" {test_every}" if test_every else "")
    if marker.is_file() and marker.read_text().strip() == made:
        return 0.0
    shutil.rmtree(folder, ignore_errors=True)
    for part in (("train", "test") if test_every else ("",)):
        for c in range(CLASSES):
            (folder / part / f"c{c}").mkdir(parents=True)
    t0 = time.perf_counter()
    step = 500
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_range, [(str(folder), s, min(n, s + step), size, seed, test_every)
                                     for s in range(0, n, step)]))
    marker.write_text(made + "\n")
    return time.perf_counter() - t0


def run_grid(store: Path, name: str, dataset: str, settings: dict, env: dict) -> tuple[dict, list[dict]]:
    """One grid through the CLI; (timing of the CLI process, each run's results.json)."""
    lines = [f'name = "{name}"', f'datasets = ["{dataset}"]', 'backbones = ["test_efficientnet"]',
             f'strategies = {json.dumps(settings.pop("strategies"))}', "[data]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.pop("data").items()]
    lines += ["[model]", 'weights = "random"', "[train]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.pop("train").items()]
    grid = store / f"{name}.toml"
    store.mkdir(parents=True, exist_ok=True)
    grid.write_text("\n".join(lines) + "\n")
    timing = timed([sys.executable, "-m", "finetune_tui.cli", "run", "--grid", str(grid), "--runs", str(store)], env)
    from engine.events import Epoch
    from engine.store import RunStore

    out = []
    for rec in RunStore(store).runs(name):
        results = rec.dir.results() or {}
        epochs = [e for e in rec.dir.events()[0] if isinstance(e, Epoch)]
        started = next((e for e in rec.dir.events()[0] if e.type == "started"), None)
        out.append({"run": rec.run_id, "status": rec.summary.status, "phases": results.get("phases", {}),
                    "total_seconds": results.get("total_seconds"), "peak_rss_mb": results.get("peak_rss_mb"),
                    "epoch_seconds": [e.seconds for e in epochs], "train_img_per_s": [e.img_per_s for e in epochs],
                    "feed": started.data.get("feed") if started else "", "cache": started.data.get("cache") if started
                    else "", "accuracy": results.get("accuracy")})
    return {k: v for k, v in timing.items() if k != "stdout"}, out


def second_run(args, env) -> dict:
    folder = Path(args.workdir) / f"folder{args.images // 1000}k"
    made = make_folder(folder, args.images, 96)
    print(f"folder {folder}: {args.images} PNGs at 96 px ({'made in %.0f s' % made if made else 'kept'})", flush=True)
    common = {"strategies": ["frozen", "partial"], "train": {"epochs": 1, "threads": args.threads},
              "data": {"image_size": 64, "train_limit": 500}}
    results = {}
    for label, cache in (("cache", True), ("no-cache", False)):
        store = Path(args.workdir) / f"store-second-run-{label}"
        shutil.rmtree(store, ignore_errors=True)
        settings = json.loads(json.dumps(common))
        settings["data"]["cache"] = cache
        before = load()
        cli, runs = run_grid(store, "second", f"imagefolder:{folder}", settings, env)
        results[label] = {"cli": cli, "runs": runs, "load_before": before, "load_after": load()}
        data = [r["phases"].get("data") for r in runs]
        print(f"{label:9s} data phase per run: {', '.join(f'{d:.2f} s' for d in data)}; "
              f"grid wall {cli['wall_seconds']:.0f} s (load {before} -> {load()})", flush=True)
    first, second = (r["phases"]["data"] for r in results["cache"]["runs"])
    nocache_second = results["no-cache"]["runs"][1]["phases"]["data"]
    print(f"second run's data ready {first / second:.1f}x faster than the first's (which decoded); "
          f"{nocache_second / second:.1f}x faster than a run without the cache", flush=True)
    return {"folder": str(folder), "images": args.images, **results,
            "ratio_first_to_second": first / second, "ratio_nocache_to_cached": nocache_second / second}


_FEED = """
import json, resource, sys, time
import torch
from engine.data.load import open_dataset
from engine.data.stream import feeds
from engine.store import DatasetCacheDir
folder, cache, mode, threads, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
ds = open_dataset(f"imagefolder:{folder}", image_size=128, val_fraction=0.02, cache=DatasetCacheDir(cache))
t0 = time.perf_counter()
made, plan = feeds(ds.arrays, {"train": ds.train}, torch.device("cpu"), mode=mode)
feed = made["train"]
ready = time.perf_counter() - t0
order = torch.randperm(len(feed), generator=torch.Generator().manual_seed(0))
passes = []
for _ in range(2):
    t0, total = time.perf_counter(), 0.0
    for idx, x in feed.batches(order, batch):
        total += float(x.to(torch.float32).mul_(1 / 255).mean())  # what every batch costs the trainer first
    passes.append(time.perf_counter() - t0)
print(json.dumps({"mode": mode, "rows": len(feed), "ready_seconds": ready, "pass_seconds": passes,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "plan": plan.describe()}))
"""


def stream(args, env) -> dict:
    folder = Path(args.workdir) / f"folder{args.images // 1000}k-160-split"
    made = make_folder(folder, args.images, 160, test_every=args.test_every)
    print(f"folder {folder}: {args.images} PNGs at 160 px, every {args.test_every}th in test/ "
          f"({'made in %.0f s' % made if made else 'kept'})", flush=True)
    store = Path(args.workdir) / "store-stream"
    shutil.rmtree(store, ignore_errors=True)
    out = {"folder": str(folder), "images": args.images, "train_limit": args.train_limit, "epochs": args.epochs,
           "runs": {}}
    # through the trainer: "always" first (it decodes the folder into the cache), then "never" (a cache hit)
    for mode in ("always", "never"):
        settings = {"strategies": ["full"], "train": {"epochs": args.epochs, "patience": args.epochs + 1,
                                                     "threads": args.threads},
                    "data": {"image_size": 128, "train_limit": args.train_limit, "val_fraction": args.val_fraction,
                             "stream": mode}}
        before = load()
        cli, runs = run_grid(store, f"stream-{mode}", f"imagefolder:{folder}", settings, env)
        (r,) = runs
        out["runs"][mode] = {"cli": cli, "run": r, "load_before": before, "load_after": load()}
        print(f"stream={mode:6s} epochs {', '.join(f'{e:.1f}' for e in r['epoch_seconds'])} s  peak RSS "
              f"{r['peak_rss_mb']:6.0f} MB  data {r['phases'].get('data', 0):6.1f} s  total {r['total_seconds']:6.0f} s  "
              f"cache {r['cache']}  [{r['feed']}] (load {before} -> {load()})", flush=True)
    s, m = out["runs"]["always"]["run"], out["runs"]["never"]["run"]
    out["epoch_ratio_streamed_to_held"] = sum(s["epoch_seconds"]) / sum(m["epoch_seconds"])
    print(f"trainer: streamed epochs / in-memory epochs: {out['epoch_ratio_streamed_to_held']:.3f}; "
          f"peak RSS streamed {s['peak_rss_mb']:.0f} MB vs in memory {m['peak_rss_mb']:.0f} MB", flush=True)
    # the feed alone over the whole training split (no train_limit): every row read, as a batch of float
    cache = store / ".cache" / "datasets"
    out["feed"] = {}
    for mode in ("always", "never"):
        before = load()
        res = subprocess.run([sys.executable, "-c", _FEED, str(folder), str(cache), mode, str(args.threads),
                              "64"], capture_output=True, text=True, env=env, check=True)
        f = json.loads(res.stdout.strip().splitlines()[-1])
        out["feed"][mode] = {**f, "load_before": before, "load_after": load()}
        print(f"feed={mode:6s} {f['rows']} rows: ready {f['ready_seconds']:.1f} s, passes "
              f"{', '.join(f'{x:.1f}' for x in f['pass_seconds'])} s, peak RSS {f['peak_rss_mb']:.0f} MB "
              f"[{f['plan']}] (load {before} -> {load()})", flush=True)
    fs, fm = out["feed"]["always"], out["feed"]["never"]
    out["feed_ratio_streamed_to_held"] = min(fs["pass_seconds"]) / min(fm["pass_seconds"])
    print(f"feed: streamed pass / in-memory pass {out['feed_ratio_streamed_to_held']:.2f} (best of 2 each); "
          f"in memory needs {fm['ready_seconds']:.0f} s to read the split first", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["second-run", "stream"])
    p.add_argument("--images", type=int, default=0, help="folder size (default 20,000 / 100,000)")
    p.add_argument("--train-limit", type=int, default=1500, help="stream: training images per epoch")
    p.add_argument("--epochs", type=int, default=2, help="stream: epochs of each run")
    p.add_argument("--val-fraction", type=float, default=0.02, help="stream: of the training folder")
    p.add_argument("--test-every", type=int, default=50, help="stream: every k-th image goes to test/")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default="/tmp/finetune-bench")
    p.add_argument("--json", help="also write every figure here")
    args = p.parse_args()
    args.images = args.images or (20000 if args.what == "second-run" else 100000)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": str(args.threads)}
    import torch

    prov = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
            "device": "cpu", "load_start": load()}
    print("provenance:", json.dumps(prov), flush=True)
    result = second_run(args, env) if args.what == "second-run" else stream(args, env)
    if args.json:
        Path(args.json).write_text(json.dumps({"provenance": prov, args.what: result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
