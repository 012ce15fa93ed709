"""The ray executor on a real Ray cluster of two simulated nodes on this machine (``ray.cluster_utils.Cluster``,
how Ray tests itself): a grid spread over both nodes, a node removed mid-run and its run resumed on the other,
cancel, and an orchestrator restarted adopting a run still alive on the cluster. The store is the shared-
filesystem mode (every simulated node sees this machine's tmp folder), and the ship mode, where nodes train in
scratch folders and the head's store gets everything through its sink."""

from __future__ import annotations

import io
import threading
import time

import pytest
from rich.console import Console

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'finetune-tui[ray]')")

from engine import events as ev  # noqa: E402
from engine.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from engine.console import runs_table  # noqa: E402
from engine.orchestrator import Orchestrator, prepare  # noqa: E402
from engine.ray_launcher import NAMESPACE, RayLauncher, actor_name  # noqa: E402
from engine.store import RunDir, load_run  # noqa: E402
from engine.store.heartbeat import local_host  # noqa: E402

BASE = RunConfig(
    data=DataConfig(dataset="digits", image_size=32, batch_size=64),
    model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
    train=TrainConfig(epochs=1, threads=1, device="cpu"),
)
SLOW = RunConfig(data=BASE.data, model=BASE.model,
                 train=TrainConfig(epochs=60, patience=100, threads=1, device="cpu"))


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # the head holds no CPU, so every run lands on one of the two worker nodes
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [c.add_node(num_cpus=1), c.add_node(num_cpus=1)]
    c.wait_for_nodes()
    launcher = RayLauncher(c.address)
    yield c, nodes, launcher
    ray.shutdown()
    c.shutdown()


def grid(name: str, strategies=("frozen",), base=BASE, **kw) -> GridConfig:
    return GridConfig(name=name, datasets=("digits",), backbones=("test_efficientnet",), strategies=strategies,
                      base=base, executor="ray", **kw)


def wait_for(check, timeout: float = 240) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def events_of(rd: RunDir) -> list[ev.Event]:
    return rd.events()[0]


def test_capacity_is_what_the_cluster_holds(cluster):
    from engine.launcher import Resources

    _, _, launcher = cluster
    assert launcher.capacity(Resources(threads=1)) == 2  # two nodes of one CPU each, one CPU a run
    assert launcher.capacity(Resources(threads=2)) == 1  # no node holds two CPUs: at least one run still
    assert not launcher.has_gpus()


def test_a_grid_spreads_over_both_nodes(cluster, tmp_path):
    _, _, launcher = cluster
    gdir = prepare(grid("spread", strategies=("frozen", "partial", "full", "two_stage")), tmp_path)
    orch = Orchestrator(gdir, launcher=launcher)
    assert orch.concurrency == 2
    counts = orch.run()
    assert counts == {"done": 4}
    hosts = {load_run(RunDir(gdir / rid)).summary.host for rid in orch.grid_dir.run_ids()}
    assert len(hosts) == 2 and local_host() not in hosts  # both simulated nodes, each named apart
    for rid in orch.grid_dir.run_ids():
        rd = RunDir(gdir / rid)
        assert rd.results_file.exists() and rd.best.exists()
        assert not rd.heartbeat_file.exists()  # a worker that ended took its heartbeat with it
    assert not [a for a in launcher.ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith("run-")]  # every run's actor was released
    console = Console(file=io.StringIO(), width=80)
    console.print(runs_table(load_run(RunDir(gdir / rid)) for rid in orch.grid_dir.run_ids()))
    text = console.file.getvalue()
    assert " host " in text and all(h in text for h in hosts)  # `runs` says which node trained each


def test_the_run_command_takes_the_ray_executor(cluster, tmp_path, capsys):
    from finetune_tui.cli import main

    c, _, _ = cluster
    code = main(["run", "--runs", str(tmp_path), "--name", "cli", "--datasets", "digits", "--backbones",
                 "test_efficientnet", "--strategies", "frozen", "--epochs", "1", "--image-size", "32", "--weights",
                 "random", "--device", "cpu", "--set", "train.threads=1", "--executor", "ray", "--ray-address",
                 c.address, "--plain"])
    assert code == 0, capsys.readouterr().err
    summary = load_run(RunDir(tmp_path / "cli" / "digits__test_efficientnet__frozen")).summary
    assert summary.status == "done" and summary.host.rpartition("#")[2] in {n.node_id[:6] for n in cluster[1]}


def test_cancel_reaches_a_remote_run(cluster, tmp_path):
    _, _, launcher = cluster
    gdir = prepare(grid("cancel", base=SLOW), tmp_path)
    rd = RunDir(gdir / "digits__test_efficientnet__frozen")
    orch = Orchestrator(gdir, launcher=launcher)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(orch.run()), daemon=True)
    thread.start()
    assert wait_for(lambda: load_run(rd).summary.epoch >= 1)
    beat = rd.heartbeat()
    assert beat is not None and beat.host == load_run(rd).summary.host and beat.fresh()
    rd.request_cancel("stop it from the head")
    thread.join(timeout=120)
    assert result == {"cancelled": 1}
    assert load_run(rd).summary.error == "stop it from the head"


def test_a_restarted_orchestrator_adopts_a_run_alive_on_the_cluster(cluster, tmp_path):
    """The orchestrator that launched a run is gone; the run's detached actor trains on; a new one adopts it."""
    from engine.launcher import Resources

    _, _, launcher = cluster
    gdir = prepare(grid("adopt", base=RunConfig(data=BASE.data, model=BASE.model,
                                                train=TrainConfig(epochs=12, patience=100, threads=1,
                                                                  device="cpu"))), tmp_path)
    rd = RunDir(gdir / "digits__test_efficientnet__frozen")
    launcher.start(rd.path, Resources(threads=1))  # its orchestrator died right after: nobody watches it
    assert wait_for(lambda: load_run(rd).summary.epoch >= 1)
    assert load_run(rd).summary.status == "running"

    launched = []

    class Counting(RayLauncher):
        def __init__(self):
            self.__dict__.update(launcher.__dict__)

        def launch(self, run_dir, request, on_line):
            launched.append(run_dir)
            return super().launch(run_dir, request, on_line)

    seen = []
    counts = Orchestrator(gdir, launcher=Counting(), on_event=lambda rid, e: seen.append(e.type)).run()
    assert launched == []  # adopted, never trained twice
    assert counts == {"done": 1}
    assert [e.type for e in events_of(rd)].count("started") == 1
    assert seen[-1] == "finished" and "epoch" in seen  # the adopter tailed its events to the end


def test_a_lost_node_fails_the_run_and_it_resumes_on_the_other(cluster, tmp_path):
    c, nodes, launcher = cluster
    base = RunConfig(data=BASE.data, model=BASE.model, train=TrainConfig(epochs=12, patience=100, threads=1,
                                                                           device="cpu"))
    gdir = prepare(grid("lost", base=base), tmp_path)
    rd = RunDir(gdir / "digits__test_efficientnet__frozen")
    orch = Orchestrator(gdir, launcher=launcher)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(orch.run()), daemon=True)
    thread.start()
    assert wait_for(lambda: load_run(rd).summary.epoch >= 1 and rd.state_file.exists())
    first_host = load_run(rd).summary.host
    by_label = {n.node_id[:6]: n for n in nodes}
    victim = by_label[first_host.rpartition("#")[2]]
    c.remove_node(victim)
    try:
        thread.join(timeout=300)
        assert result == {"done": 1}
        events = events_of(rd)
        failed = [e for e in events if isinstance(e, ev.Failed)]
        assert [e.error for e in failed] == [f"node lost: {first_host}"]
        started = [e for e in events if isinstance(e, ev.Started)]
        assert [s.host for s in started][0] == first_host and started[-1].host != first_host
        cut = events.index(failed[0])
        after = [e.epoch for e in events[cut:] if isinstance(e, ev.Epoch)]
        assert after[0] >= 2 and after[-1] == 12  # resumed from its last_state.pt, not restarted
        assert load_run(rd).summary.host == started[-1].host
    finally:
        nodes.remove(victim)
        nodes.append(c.add_node(num_cpus=1))  # the module's cluster keeps two nodes
        c.wait_for_nodes()


def test_ship_mode_forwards_events_and_files_to_the_head_store(cluster, tmp_path):
    """No shared filesystem: each node trains in its scratch folder; the head's store gets the events as they
    happen and every file once written, and the head's cancel request reaches the node."""
    _, _, launcher = cluster
    ship = RayLauncher(store="ship")  # on the module's cluster (ray is connected already)
    two = RunConfig(data=BASE.data, model=BASE.model, train=TrainConfig(epochs=2, threads=1, device="cpu"))
    gdir = prepare(grid("ship", strategies=("frozen", "full"), base=two, ray_store="ship",
                        overrides={"full": {"train.epochs": 60, "train.patience": 100}}), tmp_path)
    done, slow = RunDir(gdir / "digits__test_efficientnet__frozen"), RunDir(gdir / "digits__test_efficientnet__full")
    seen: list[tuple[str, str, float]] = []
    orch = Orchestrator(gdir, launcher=ship, on_event=lambda rid, e: seen.append((rid, e.type, time.time())))
    assert ship.store == "ship"
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(orch.run()), daemon=True)
    thread.start()
    assert wait_for(lambda: load_run(slow).summary.epoch >= 1)  # forwarded as it happens: the run goes on
    live = slow.liveness()
    assert live.alive and live.remote and live.beat.dir != str(slow.path)  # beats from its scratch copy
    slow.request_cancel("stop the shipped one")
    thread.join(timeout=180)
    assert result == {"done": 1, "cancelled": 1}
    assert load_run(slow).summary.error == "stop the shipped one"
    for rd in (done, slow):
        assert not rd.lock_file.exists()  # the worker never touched the head's folder: its flock was elsewhere
        assert not rd.heartbeat_file.exists()  # its end reached the head too
        assert rd.worker_log.read_text().strip() and rd.state_file.exists() and rd.metrics_file.exists()
    assert done.results()["accuracy"] > 0 and done.probs() is not None and done.has_checkpoint()
    kinds = [kind for rid, kind, _ in seen if rid == done.run_id]
    assert kinds.count("epoch") == 2 and kinds[-1] == "finished"  # the orchestrator tailed the shipped stream


def test_actor_names_tell_stores_apart(tmp_path):
    a, b = actor_name(tmp_path / "one" / "g" / "r"), actor_name(tmp_path / "two" / "g" / "r")
    assert a != b and a.endswith("-r") and b.endswith("-r")
    assert NAMESPACE == "finetune-tui"
