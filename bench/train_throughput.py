"""End to end: the engine (``finetune-tui run``, its real workers) vs the plain PyTorch pipeline, same run.

For each strategy the same training happens twice in this one benchmark run,
one after the other on the same machine: EfficientNet-Lite0 (the offline
ImageNet weights) on the footwear split (9,000 train / 1,000 val / 2,500
test) at 64 px, batch 64, Adam, the strategy's trainable layers and learning
rate. Once through ``finetune-tui run`` (a grid of that one run, in a fresh run
store: the dataset cache starts empty), once through
``bench/plain_pipeline.py`` (a Dataset with per-image PIL transforms and a
DataLoader). Each is a subprocess timed from launch to exit, with its CPU time
(user and system, every descendant) and page faults from ``os.wait4``; for the
engine, the CLI's plus its worker's own (results.json ``cpu``: a worker forked
from the fork server is nobody's waited-for child) plus the fork server's
imports, measured once in a process of their own. The
figures are printed with the machine's load average before and after, the
device and the versions, and written as JSON with ``--json``.

    python bench/train_throughput.py                          # frozen 5, partial 3, full 1 epoch(s)
    python bench/train_throughput.py --cases frozen:5 --train-limit 2000   # a quicker look
    python bench/train_throughput.py --before /tmp/before     # also the engine of another checkout
    python bench/train_throughput.py --engine-only            # the engine's CPU and system share alone

``--before DIR`` runs the same grid with the engine of the checkout in DIR too
(e.g. ``git worktree add /tmp/before c2340fd``: the code before the dataset
cache and the CPU choices), as a third column.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(argv: list[str], env: dict, cwd: Path = ROOT) -> dict:
    """Run ``argv`` to the end: wall seconds, CPU seconds of it and its descendants, faults, peak RSS, stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True)
    out_chunks = []
    # read stdout while it runs (a full pipe would block the child); stderr is small
    for line in proc.stdout:
        out_chunks.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall_seconds": wall, "user_seconds": usage.ru_utime, "system_seconds": usage.ru_stime,
            "minor_faults": usage.ru_minflt, "max_rss_mb": usage.ru_maxrss / 1024, "stdout": "".join(out_chunks)}


def _cpu(run: dict) -> float:
    return run["user_seconds"] + run["system_seconds"]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def engine_case(strategy: str, epochs: int, args, env: dict, store: Path, checkout: Path = ROOT) -> dict:
    grid = store / f"{strategy}.toml"
    grid.write_text(
        f'name = "bench-{strategy}"\ndatasets = ["footwear"]\nbackbones = ["efficientnet_lite0"]\n'
        f'strategies = ["{strategy}"]\n[data]\nimage_size = {args.image_size}\nbatch_size = {args.batch_size}\n'
        f'train_limit = {args.train_limit}\n[model]\nweights = "pretrained"\n'
        f'[train]\nepochs = {epochs}\npatience = {epochs + 1}\nthreads = {args.threads}\n')
    run = timed([sys.executable, "-m", "finetune_tui.cli", "run", "--grid", str(grid), "--runs", str(store)],
                {**env, "PYTHONPATH": str(checkout)}, cwd=checkout)
    from engine.store import RunStore

    (rec,) = RunStore(store).runs(f"bench-{strategy}")
    results = rec.dir.results() or {}
    run.update({"pipeline": "engine" if checkout == ROOT else f"engine@{checkout}", "accuracy": results.get("accuracy"),
                "f1_macro": results.get("f1_macro"), "phases": results.get("phases", {}),
                "worker_total_seconds": results.get("total_seconds")})
    worker = results.get("cpu")
    if worker:  # a worker forked from the fork server is nobody's waited-for child: its usage is in results.json
        run["cli_only"] = {k: run[k] for k in ("user_seconds", "system_seconds", "minor_faults")}
        run["worker_cpu"] = worker
        run["forkserver_imports"] = fork_server_imports(env, checkout)
        for key in ("user_seconds", "system_seconds", "minor_faults"):
            run[key] += worker[key] + run["forkserver_imports"][key]
    return run


_IMPORTS: dict[Path, dict] = {}


def fork_server_imports(env: dict, checkout: Path) -> dict:
    """What the fork server spends once per grid (importing ``engine.warm_preload``), measured in a process of
    its own: the CLI never waits for the fork server, so its usage reaches no ``wait4``."""
    if checkout not in _IMPORTS:
        r = timed([sys.executable, "-c", "import engine.warm_preload"], {**env, "PYTHONPATH": str(checkout)}, checkout)
        _IMPORTS[checkout] = {k: r[k] for k in ("wall_seconds", "user_seconds", "system_seconds", "minor_faults")}
    return _IMPORTS[checkout]


def plain_case(strategy: str, epochs: int, args, env: dict) -> dict:
    run = timed([sys.executable, str(ROOT / "bench" / "plain_pipeline.py"), "--strategy", strategy, "--epochs",
                 str(epochs), "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
                 "--threads", str(args.threads), "--workers", str(args.workers), "--train-limit",
                 str(args.train_limit)], env)
    report = json.loads(run["stdout"].strip().splitlines()[-1])
    run.update({"pipeline": "plain", "accuracy": report["accuracy"], "f1_macro": report["f1_macro"],
                "phases": report["phases"]})
    return run


def provenance(args) -> dict:
    import timm
    import torch

    return {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "model": "efficientnet_lite0 (offline ImageNet weights)", "dataset": "footwear",
            "image_size": args.image_size, "batch_size": args.batch_size, "threads": args.threads,
            "plain_loader_workers": args.workers, "train_limit": args.train_limit, "device": "cpu"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="frozen:5,partial:3,full:1", help="strategy:epochs, comma-separated")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch threads, both pipelines")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain pipeline")
    p.add_argument("--train-limit", type=int, default=0, help="fewer training images (0: all 9,000)")
    p.add_argument("--before", type=Path, help="a checkout whose engine runs the same grids as a third column")
    p.add_argument("--engine-only", action="store_true", help="skip the plain pipeline (the engine's CPU figures)")
    p.add_argument("--json", help="also write every figure here")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": str(args.threads)}
    prov = provenance(args)
    print("provenance:", json.dumps(prov))
    rows = []
    for case in args.cases.split(","):
        strategy, epochs = case.split(":")
        before = load()
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
            engine = engine_case(strategy, int(epochs), args, env, Path(tmp))
        plain = None if args.engine_only else plain_case(strategy, int(epochs), args, env)
        old = None
        if args.before:
            with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
                old = engine_case(strategy, int(epochs), args, env, Path(tmp), checkout=args.before.resolve())
        after = load()
        row = {"strategy": strategy, "epochs": int(epochs), "load_before": before, "load_after": after,
               "engine": {k: v for k, v in engine.items() if k != "stdout"}}
        if plain is not None:
            row.update({"plain": {k: v for k, v in plain.items() if k != "stdout"},
                        "ratio": plain["wall_seconds"] / engine["wall_seconds"], "cpu_ratio": _cpu(plain) / _cpu(engine)})
        if old is not None:
            row["before"] = {k: v for k, v in old.items() if k != "stdout"}
            if plain is not None:
                row["before_ratio"] = plain["wall_seconds"] / old["wall_seconds"]
        rows.append(row)
        for name in ("engine", "plain", "before"):
            if name not in row:
                continue
            r = row[name]
            cpu = r["user_seconds"] + r["system_seconds"]
            print(f"{strategy:8s} {epochs} ep {name:6s} {r['wall_seconds']:7.1f} s wall  cpu {cpu:7.1f} s "
                  f"(system {r['system_seconds']:5.1f} s = {r['system_seconds'] / max(cpu, 1e-9):4.0%})  "
                  f"faults {r['minor_faults'] / 1e6:5.2f} M  acc {r['accuracy']:.4f}  "
                  f"phases {json.dumps({k: round(v, 1) for k, v in r['phases'].items()})}")
        if plain is not None:
            print(f"{strategy:8s} engine is {row['ratio']:.2f}x faster end to end, {row['cpu_ratio']:.2f}x less CPU"
                  + (f"; the --before engine was {row['before_ratio']:.2f}x" if old is not None else "")
                  + f" (load {before} -> {after})", flush=True)
    engines = [row["engine"] for row in rows]
    user, system = sum(r["user_seconds"] for r in engines), sum(r["system_seconds"] for r in engines)
    print(f"the engine's grids together: {user + system:.1f} s CPU, of which system {system:.1f} s = "
          f"{system / max(user + system, 1e-9):.1%}; {sum(r['minor_faults'] for r in engines) / 1e6:.2f} M minor faults "
          f"in {sum(r['wall_seconds'] for r in engines):.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"provenance": prov, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
