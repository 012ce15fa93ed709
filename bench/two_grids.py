"""Two demo grids started side by side on one machine: cores shared through the host's CPU claims
(``train.threads = 0``) vs every run on all the cores (``train.threads = <cores>``, what 0 gave each grid
before it counted the other grids' runs). Same run of this script, one pair each, fixed first.

Printed: the pair's wall time (first launch to last exit) per mode, each run's seconds, the ratio, the
machine and versions.

    python bench/two_grids.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "finetune_tui.cli"]


def pair(store: Path, threads: int | None) -> tuple[float, dict[str, float]]:
    """Wall seconds of two demo grids started 3 s apart, and each run's total seconds."""
    extra = ["--set", f"train.threads={threads}"] if threads else []
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               FINETUNE_TUI_HOST_DIR=str(store / "host"))  # only this pair's claims
    t0 = time.perf_counter()
    procs = []
    for name in ("a", "b"):
        procs.append(subprocess.Popen([*CLI, "run", "--preset", "demo", "--plain", "--name", name, "--runs",
                                       str(store), *extra], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
        time.sleep(3)
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a grid failed: {err.strip().splitlines()[-1:]}")
    wall = time.perf_counter() - t0
    rows = json.loads(subprocess.run([*CLI, "runs", "--runs", str(store), "--format", "json"], env=env, cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)
    return wall, {f"{r['grid']}/{r['strategy']}": r.get("total_seconds") or 0.0 for r in rows}


def main() -> int:
    import timm
    import torch

    cores = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; python {platform.python_version()}, "
          f"torch {torch.__version__}, timm {timm.__version__}; load {os.getloadavg()[0]:.2f}")
    results = {}
    for label, threads in (("fixed", cores), ("shared", None)):
        with tempfile.TemporaryDirectory(prefix=f"two-grids-{label}-") as tmp:
            wall, runs = pair(Path(tmp), threads)
        results[label] = wall
        what = f"train.threads={threads}" if threads else "train.threads=0 (claims)"
        print(f"{label:6s} {what:26s} pair wall {wall:6.1f} s; runs: " +
              ", ".join(f"{k} {v:.0f}s" for k, v in sorted(runs.items())))
    print(f"fixed / shared wall: {results['fixed'] / results['shared']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
