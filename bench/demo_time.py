"""The demo grid's wall time after install, this checkout's engine vs another checkout's, same grid, same run.

The grid is ``--preset demo`` as this checkout defines it, written out as a
grid file with only the keys it sets (so an older checkout reads it too) and
run with ``finetune-tui run --grid`` in a fresh run store, once per checkout.
Printed: wall time from launch to exit, CPU time (user and system, all
workers), each run's total and per-phase times, the load average around it.

    python bench/demo_time.py                       # this checkout only
    python bench/demo_time.py --before /tmp/before  # and e.g. `git worktree add /tmp/before c2340fd`
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from train_throughput import load, timed  # noqa: E402  (bench/ is this script's folder)


def demo_grid_file(path: Path) -> None:
    """``--preset demo`` as a TOML grid file holding only what differs from the defaults."""
    from engine.config import DataConfig, ModelConfig, TrainConfig
    from engine.presets import get_preset

    grid = get_preset("demo")
    lines = [f"name = {json.dumps(grid.name)}"] + [f"{k} = {json.dumps(list(getattr(grid, k)))}"
                                                    for k in ("datasets", "backbones", "strategies")]
    for section, default in (("data", DataConfig()), ("model", ModelConfig()), ("train", TrainConfig())):
        values = dataclasses.asdict(getattr(grid.base, section))
        changed = {k: v for k, v in values.items() if v != getattr(default, k) and f"{section}.{k}" not in
                   ("data.dataset", "model.backbone", "train.strategy")}
        if changed:
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in changed.items()]
    for name, table in grid.overrides.items():
        lines.append(f"[overrides.{json.dumps(name)}]")
        lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")


def run_demo(checkout: Path, grid: Path, env: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as store:
        before = load()
        t = timed([sys.executable, "-m", "finetune_tui.cli", "run", "--grid", str(grid), "--runs", store],
                  {**env, "PYTHONPATH": str(checkout)}, cwd=checkout)
        from engine.store import RunStore

        runs = []
        for rec in RunStore(store).runs():
            results = rec.dir.results() or {}
            runs.append({"run": rec.run_id, "status": rec.summary.status, "accuracy": results.get("accuracy"),
                         "total_seconds": results.get("total_seconds"), "train_seconds": results.get("train_seconds"),
                         "phases": results.get("phases", {})})
    t.pop("stdout")
    return {**t, "runs": runs, "load_before": before, "load_after": load()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, help="another checkout to run the same grid with")
    p.add_argument("--json")
    args = p.parse_args()
    import torch

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    prov = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}
    print("provenance:", json.dumps(prov), flush=True)
    out = {"provenance": prov}
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "demo.toml"
        demo_grid_file(grid)
        print(grid.read_text(), flush=True)
        for label, checkout in (("this", ROOT), ("before", args.before)):
            if checkout is None:
                continue
            r = run_demo(checkout.resolve(), grid, env)
            out[label] = r
            cpu = r["user_seconds"] + r["system_seconds"]
            print(f"{label}: demo {r['wall_seconds']:.0f} s wall, {cpu:.0f} s CPU (system {r['system_seconds']:.0f} s "
                  f"= {r['system_seconds'] / max(cpu, 1e-9):.0%}), load {r['load_before']} -> {r['load_after']}",
                  flush=True)
            for run in r["runs"]:
                phases = ", ".join(f"{k} {v:.0f}s" for k, v in run["phases"].items())
                total = f"{run['total_seconds']:.0f} s" if run["total_seconds"] else "?"
                print(f"  {run['run']:45s} {run['status']:6s} acc {run['accuracy'] or 0:.4f} total {total} ({phases})")
    if "before" in out:
        print(f"demo wall time: {out['before']['wall_seconds'] / out['this']['wall_seconds']:.2f}x faster than --before")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
