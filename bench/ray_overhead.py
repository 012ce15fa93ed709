"""Per-run overhead of the Ray executor against the subprocess launcher, same machine, same runs; and the
issue-12 target: a 12-run grid on a 2-node simulated cluster, one node removed mid-grid, every run done.

Part 1 (``overhead``): N identical tiny runs (digits, test_efficientnet, 32 px, 1 epoch, 1 thread, random
weights), one at a time, through ``SubprocessLauncher`` and then through ``RayLauncher`` on a Ray
cluster started here with one CPU (started once, its start-up timed apart). Per run: wall time from
launch to the final event reaching the orchestrator, and the worker's own ``total_seconds`` (process
start to end) and ``startup`` phase. The overhead is wall minus the worker's training work; the ratio is
Ray's per-run wall over the subprocess's.

Part 2 (``grid``): a 12-run grid (4 strategies x 3 learning rates, 2 epochs) on ``ray.cluster_utils.Cluster``
with two 1-CPU worker nodes; once the first runs are past their first epoch, one node is removed; the
grid must end with 12 runs done, the lost node's runs resumed on the other (``retries``).

    flock /work/notes/cpu.lock -c 'python bench/ray_overhead.py --runs 4 --json /tmp/ray_overhead.json'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402

BASE = RunConfig(
    data=DataConfig(dataset="digits", image_size=32, batch_size=64),
    model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
    train=TrainConfig(epochs=1, threads=1, device="cpu"),
)


def one_by_one(launcher, root: Path, name: str, n: int, executor: str) -> list[dict]:
    """N runs of the same config, each launched when the one before ended; per-run timings."""
    from engine.orchestrator import Orchestrator, prepare
    from engine.store import RunDir

    out = []
    for i in range(n):
        grid = GridConfig(name=f"{name}{i}", datasets=("digits",), backbones=("test_efficientnet",),
                          strategies=("frozen",), base=BASE, executor=executor, concurrency=1)
        gdir = prepare(grid, root)
        t0 = time.perf_counter()
        counts = Orchestrator(gdir, launcher=launcher).run()
        wall = time.perf_counter() - t0
        assert counts == {"done": 1}, counts
        results = json.loads(RunDir(gdir / "digits__test_efficientnet__frozen").results_file.read_text())
        out.append({"wall": round(wall, 2), "worker_total": round(results["total_seconds"], 2),
                    "startup": round(results["phases"]["startup"], 2),
                    "train_and_test": round(results["phases"]["train"] + results["phases"]["test"], 2)})
        print(f"{executor} run {i}: {out[-1]}", flush=True)
    return out


def overhead(n: int) -> dict:
    import ray

    from engine.launcher import SubprocessLauncher
    from engine.ray_launcher import RayLauncher

    with tempfile.TemporaryDirectory() as tmp:
        sub = one_by_one(SubprocessLauncher(), Path(tmp), "sub", n, "local")
        t0 = time.perf_counter()
        ray.init(num_cpus=1, include_dashboard=False, namespace="finetune-tui", log_to_driver=False)
        launcher = RayLauncher()
        ray_start = time.perf_counter() - t0
        try:
            on_ray = one_by_one(launcher, Path(tmp), "ray", n, "ray")
        finally:
            ray.shutdown()

    def mean(rows, key):
        return round(sum(r[key] for r in rows) / len(rows), 2)

    summary = {key: {"subprocess": mean(sub, key), "ray": mean(on_ray, key)}
               for key in ("wall", "worker_total", "startup", "train_and_test")}
    summary["wall_ratio"] = round(summary["wall"]["ray"] / summary["wall"]["subprocess"], 2)
    summary["overhead_s"] = {k: round(summary["wall"][k] - summary["train_and_test"][k], 2)
                             for k in ("subprocess", "ray")}
    summary["overhead_ratio"] = round(summary["overhead_s"]["ray"] / summary["overhead_s"]["subprocess"], 2)
    summary["ray_cluster_start_s"] = round(ray_start, 2)
    return {"runs": n, "subprocess": sub, "ray": on_ray, "summary": summary}


def grid_with_a_node_lost() -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from engine.orchestrator import Orchestrator, prepare
    from engine.ray_launcher import RayLauncher
    from engine.store import RunStore

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    try:
        launcher = RayLauncher(cluster.address)
        base = RunConfig(data=BASE.data, model=BASE.model, train=TrainConfig(epochs=2, threads=1, device="cpu"))
        grid = GridConfig(name="twelve", datasets=("digits",), backbones=("test_efficientnet",),
                          strategies=("frozen", "partial", "full", "two_stage"),
                          axes={"train.lr": (1e-3, 3e-4, 1e-4)}, base=base, executor="ray", retries=2)
        with tempfile.TemporaryDirectory() as tmp:
            gdir = prepare(grid, tmp)
            orch = Orchestrator(gdir, launcher=launcher)
            result: dict = {}
            t0 = time.perf_counter()
            thread = threading.Thread(target=lambda: result.update(orch.run()), daemon=True)
            thread.start()
            store = RunStore(tmp)
            while time.perf_counter() - t0 < 900:  # remove a node once runs are past their first epoch
                running = [r for r in store.runs("twelve") if r.summary.status == "running" and r.summary.epoch >= 1]
                if running:
                    break
                time.sleep(0.5)
            host = running[0].summary.host
            victim = next(n for n in nodes if host.endswith(n.node_id[:6]))
            removed_at = time.perf_counter() - t0
            cluster.remove_node(victim)
            thread.join(timeout=1800)
            wall = time.perf_counter() - t0
            records = store.runs("twelve")
            lost = [r.run_id for r in records if any(e.type == "failed" and e.error.startswith("node lost")
                                                     for e in r.dir.events()[0])]
            return {"runs": len(records), "counts": result, "wall_s": round(wall, 1),
                    "node_removed_at_s": round(removed_at, 1), "removed_host": host, "runs_on_lost_node": lost,
                    "final_hosts": sorted({r.summary.host for r in records})}
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs per launcher (overhead part)")
    parser.add_argument("--part", choices=("overhead", "grid", "both"), default="both")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    import ray
    import torch

    prov = {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(), "load_start": [round(x, 2) for x in os.getloadavg()]}
    print("provenance:", json.dumps(prov), flush=True)
    out: dict = {"provenance": prov}
    if args.part in ("overhead", "both"):
        out["overhead"] = overhead(args.runs)
        print("overhead:", json.dumps(out["overhead"]["summary"]), flush=True)
    if args.part in ("grid", "both"):
        out["grid"] = grid_with_a_node_lost()
        print("grid:", json.dumps(out["grid"]), flush=True)
    prov["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print("load average at the end:", prov["load_end"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
