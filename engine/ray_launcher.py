"""Runs on a Ray cluster's nodes: one detached Ray actor per run, the run folder on a filesystem they share.

``executor = "ray"`` (``--executor ray``): the orchestrator stays on the head
node and asks Ray for each run's resources (one GPU where the cluster has GPUs,
``train.threads`` CPUs, at least one); Ray places the run on a node that holds
them. The run is an actor of its own (a process of its own on that node, its
resources held until it ends) that calls ``engine.worker.main`` in its main
thread, so the worker's run lock, heartbeat, SIGTERM handling and exit code are
what they are under the local launchers. The store is a shared filesystem
mounted at the same path on every node: the worker writes its folder there,
and the orchestrator reads its events from events.jsonl (``EventTail``) as it
does for the warm launcher.

Without a shared filesystem (``ray_store = "ship"``) the worker trains in a
scratch folder on its node, seeded with the run's files from the head (so a
re-queued run resumes from its last_state.pt), and a shipping thread beside it
forwards what it writes to a ``StoreSink`` actor on the head, which writes it
into the head's store: new events.jsonl lines as they are written (every
``SHIP_EVERY`` seconds), every other file once it changed (checkpoints,
results, probabilities, metrics, worker.log, the heartbeat), and the head's
cancel request back to the node. Files are shipped before the events that
announce them, and once more when the worker ends, before its exit code.

Faults: an actor whose node is gone ends its run with "node lost: HOST"
(``lost_node``); the orchestrator re-queues it (``GridConfig.retries``) to
resume from its last_state.pt on another node. The actors are *detached* and
named after their run folder, so they outlive the orchestrator that started
them: a restarted orchestrator finds them by name and adopts them (``adopt``).
Stopping a run is its cancel file first (the worker polls it); ``kill`` is
``ray.kill`` of its actor, for a run that ignored the request (``ray.cancel``
does not interrupt a running actor method).

Ray is imported lazily: without it, asking for this executor is one line
naming the extra to install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from engine.errors import UserError
from engine.launcher import PROJECT_ROOT, EventTail, Resources
from engine.store import RunDir

SHIP_EVERY = 0.5  # seconds between shipments of a run's new events and changed files (ray_store = "ship")
SCRATCH_ENV = "FINETUNE_TUI_SCRATCH"  # where a node trains runs in ship mode (default: its temp folder)
NAMESPACE = "finetune-tui"  # detached actors' namespace: a restarted orchestrator looks its runs up there
NAME_RELEASE_WAIT = 30.0  # seconds a new actor waits for its run's previous actor to release the name
KILLED = -signal.SIGKILL  # the exit code a run reads as when its actor was killed (ray.kill, a lost node)


class RayMissing(UserError):
    """The ray executor was asked for without ray installed."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissing("the ray executor needs Ray: pip install 'finetune-tui[ray]' (or pip install ray)") from None
    return ray


def actor_name(run_dir: Path) -> str:
    """A run's actor name: unique per run folder (two stores may hold a grid of the same name)."""
    path = str(Path(run_dir).resolve())
    return f"run-{hashlib.sha1(path.encode()).hexdigest()[:12]}-{Path(path).name}"[:200]


def node_label(node_id: str, nodes: list[dict]) -> str:
    """The host name of a node, with its id's start when several live nodes share that name (simulated
    nodes of one machine, containers)."""
    mine = next((n for n in nodes if n.get("NodeID") == node_id), None)
    if mine is None:
        return node_id[:8]
    host = mine.get("NodeManagerHostname") or mine.get("NodeManagerAddress") or node_id[:8]
    twins = [n for n in nodes if n.get("Alive") and (n.get("NodeManagerHostname") or n.get("NodeManagerAddress")) == host]
    return f"{host}#{node_id[:6]}" if len(twins) > 1 else host


class RunActor:
    """One run on the node Ray placed it on (wrapped with ``ray.remote`` on first use)."""

    def __init__(self):
        self.code: int | None = None

    def node(self) -> tuple[str, str, int]:
        """(node id, host label, pid) of this actor."""
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        return node_id, node_label(node_id, ray.nodes()), os.getpid()

    def run(self, run_dir: str, worker_args: list[str], threads: int, sink=None, seed: dict | None = None) -> int:
        """Train the run; with a ``sink`` (ship mode), in a scratch copy of its folder, shipping it to the head."""
        if sink is None:
            return self._train(run_dir, worker_args, threads)
        # <scratch>/<the head's store>/<grid>/<run>: the names a run reads, and one dataset cache per node and store
        store = Path(run_dir).parent.parent
        local = (Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir()) / "finetune-tui-ship"
                 / hashlib.sha1(str(store).encode()).hexdigest()[:12] / Path(run_dir).parent.name / Path(run_dir).name)
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        for name, data in (seed or {}).items():
            (local / name).write_bytes(data)
        shipper = Shipper(RunDir(local), run_dir, sink).start()
        try:
            return self._train(str(local), [str(local)] + worker_args[1:], threads)
        finally:
            shipper.stop()  # the last events and files reach the head before the exit code does
            shutil.rmtree(local, ignore_errors=True)

    def _train(self, run_dir: str, worker_args: list[str], threads: int) -> int:
        from engine.store.heartbeat import HOST_ENV
        from engine.warm_launcher import prepare_child

        _, host, _ = self.node()
        env = {key: os.environ[key] for key in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                 "PYTHONPATH") if key in os.environ}
        os.environ[HOST_ENV] = host  # the worker's started event and heartbeat name its node
        prepare_child(run_dir, env, threads)  # stderr to worker.log, stdout to nowhere, torch's threads
        from engine.worker import main

        try:
            self.code = main(worker_args)
        except SystemExit as exc:  # argparse
            self.code = exc.code if isinstance(exc.code, int) else 1
        return self.code

    def wait(self) -> int | None:
        """The run's exit code; queued behind ``run``, so a caller that lost ``run``'s result waits for its end."""
        return self.code


class StoreSink:
    """On the head (ship mode): writes what nodes ship into its store, through ``engine.store``'s writers."""

    def append_events(self, run_dir: str, data: bytes) -> None:
        with open(RunDir(run_dir).events_file, "ab") as fh:  # whole lines, in order, from the one shipper
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def write_file(self, run_dir: str, name: str, data: bytes) -> None:
        from engine.store import atomic_write_bytes

        atomic_write_bytes(Path(run_dir) / name, data)

    def remove(self, run_dir: str, name: str) -> None:
        (Path(run_dir) / name).unlink(missing_ok=True)

    def cancel_reason(self, run_dir: str) -> str | None:
        return RunDir(run_dir).cancel_reason()


def shipped_names(rd: RunDir) -> list[str]:
    """The files of a run folder that travel between a node's scratch copy and the head's store: every
    plain file but the flock (meaningless elsewhere), the cancel request (the head's, pulled), the event
    stream (shipped line by line) and temp files (names starting with a dot)."""
    keep_out = {rd.LOCK, rd.CANCEL, rd.EVENTS}
    try:
        return sorted(p.name for p in rd.path.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.name not in keep_out)
    except FileNotFoundError:
        return []


def seed_files(run_dir: Path) -> dict[str, bytes]:
    """A run's files from the head, to start (or resume) it in a node's scratch folder."""
    rd = RunDir(run_dir)
    names = [n for n in shipped_names(rd) if n != rd.HEARTBEAT] + ([rd.EVENTS] if rd.events_file.exists() else [])
    return {name: (rd.path / name).read_bytes() for name in names}


class Shipper:
    """A node's side of ship mode: a thread forwarding a scratch run folder to the head's ``StoreSink``."""

    def __init__(self, local: RunDir, head_dir: str, sink):
        import ray

        self.ray, self.local, self.head_dir, self.sink = ray, local, head_dir, sink
        self._offset = local.events_file.stat().st_size if local.events_file.exists() else 0  # the head has these
        self._sent = {name: _stamp(local.path / name) for name in shipped_names(local)}  # seeded from the head
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shipper", daemon=True)

    def start(self) -> "Shipper":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            done = self._stop.is_set()
            try:
                self.ship()
            except Exception:  # the head out of reach for a moment: the next round sends it all
                pass
            if done:
                return
            self._stop.wait(SHIP_EVERY)

    def ship(self) -> None:
        ray, sink, head = self.ray, self.sink, self.head_dir
        calls = []
        names = shipped_names(self.local)
        for name in names:  # files before the events that announce them
            stamp = _stamp(self.local.path / name)
            if stamp is not None and self._sent.get(name) != stamp:
                calls.append(sink.write_file.remote(head, name, (self.local.path / name).read_bytes()))
                self._sent[name] = stamp
        for name in [n for n in self._sent if n not in names]:
            calls.append(sink.remove.remote(head, name))  # the heartbeat, taken away at the worker's end
            del self._sent[name]
        ray.get(calls)
        try:
            with open(self.local.events_file, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1
        if end:
            ray.get(sink.append_events.remote(head, data[:end]))
            self._offset += end
        reason = ray.get(sink.cancel_reason.remote(head))
        if reason and self.local.cancel_reason() is None:
            self.local.request_cancel(reason)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


class RayHandle:
    """A run's actor as the orchestrator sees it (``RunHandle``)."""

    pid = 0  # not a process of this machine

    def __init__(self, ray, actor, node, result, run_dir: Path, on_line: Callable[[str], None], host: str = ""):
        self._ray = ray
        self.actor = actor
        self.id = f"actor {actor._actor_id.hex()[:12]}"
        self.host = host
        self.node_id = ""
        self.lost_node = ""  # the host of a node that went away under this run
        self._node = node  # actor.node()'s result: where Ray placed it (None for an adopted actor)
        self._result = result
        self.run = RunDir(run_dir)
        self._tail = EventTail(run_dir, on_line, self._exitcode, name=f"tail-{actor_name(run_dir)}")

    def _exitcode(self) -> int | None:
        ray = self._ray
        if not self.node_id and self._node is not None:
            ready, _ = ray.wait([self._node], timeout=0)
            if ready:
                try:
                    self.node_id, self.host, _ = ray.get(ready[0])
                except ray.exceptions.RayError:
                    pass  # the actor died before it said where it runs: the result says why
        ready, _ = ray.wait([self._result], timeout=0)
        if not ready:
            return None
        try:
            code = ray.get(self._result)
            code = 1 if code is None else int(code)
        except ray.exceptions.RayError as exc:
            code = KILLED
            if self._node_gone(exc):
                self.lost_node = self.host or "an unknown node"
        self._release()
        return code

    def _node_gone(self, exc) -> bool:
        nodes = self._ray.nodes()
        if self.node_id:
            return not any(n.get("NodeID") == self.node_id and n.get("Alive") for n in nodes)
        if self.host:  # adopted: known by the host its heartbeat named
            return not any(n.get("Alive") and node_label(n["NodeID"], nodes) == self.host for n in nodes)
        text = str(exc).lower()
        return "node" in text and ("died" in text or "dead" in text)

    def _release(self) -> None:
        """A detached actor lives until killed: its run is over, so are its process and its resources."""
        try:
            self._ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone with its node
            pass

    def poll(self) -> int | None:
        return self._tail.code

    def terminate(self) -> None:
        """Ask the run to stop the way every run is asked: its cancel file (the worker polls it)."""
        if self._tail.code is None and self.run.cancel_reason() is None:
            self.run.request_cancel("terminated")

    def kill(self) -> None:
        if self._tail.code is None:
            try:
                self._ray.kill(self.actor, no_restart=True)
            except Exception:
                pass


class RayLauncher:
    """``engine.launcher.Launcher`` placing each run on a node of a Ray cluster (shared store)."""

    local = False

    def __init__(self, address: str = "", store: str = "shared"):
        self.store = store
        self._sink = None
        self.ray = ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=address or None, namespace=NAMESPACE, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
            except ConnectionError as exc:
                raise UserError(f"can't reach the Ray cluster at {address or 'this machine'}: {exc}") from None
        self._actor = ray.remote(RunActor)

    def sink(self):
        """The head's ``StoreSink`` (ship mode): an actor on this node, started on first use."""
        if self._sink is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = self.ray.get_runtime_context().get_node_id()
            # detached and named: the runs' shipping outlives an orchestrator that is restarted (and adopts them)
            self._sink = self.ray.remote(StoreSink).options(
                name=f"store-sink-{hashlib.sha1(here.encode()).hexdigest()[:12]}", namespace=NAMESPACE,
                lifetime="detached", get_if_exists=True, num_cpus=0, max_concurrency=8,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()
        return self._sink

    def _nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def has_gpus(self) -> bool:
        return any(n.get("Resources", {}).get("GPU", 0) >= 1 for n in self._nodes())

    def capacity(self, request: Resources) -> int:
        """Runs the live nodes hold at once: one per GPU, else CPUs // the run's CPUs, node by node."""
        total = 0
        for node in self._nodes():
            res = node.get("Resources", {})
            if request.gpus and self.has_gpus():
                total += int(res.get("GPU", 0))
            else:
                total += int(res.get("CPU", 0) // request.cpus)
        return max(1, total)

    def launch(self, run_dir: Path, request: Resources, on_line: Callable[[str], None]) -> RayHandle:
        actor, node, result = self.start(run_dir, request)
        return RayHandle(self.ray, actor, node, result, Path(run_dir), on_line)

    def start(self, run_dir: Path, request: Resources):
        """Start a run's actor: (actor, its node() result, its run() result)."""
        gpus = 1 if request.gpus and self.has_gpus() else 0
        env = {"PYTHONPATH": _pythonpath()}
        if request.threads:
            env.update(OMP_NUM_THREADS=str(request.threads), MKL_NUM_THREADS=str(request.threads))
        options = self._actor.options(name=actor_name(run_dir), namespace=NAMESPACE, lifetime="detached",
                                      num_cpus=request.cpus, num_gpus=gpus, max_restarts=0,
                                      runtime_env={"env_vars": env})
        deadline = time.monotonic() + NAME_RELEASE_WAIT
        while True:
            try:
                actor = options.remote()
                break
            except self.ray.exceptions.ActorAlreadyExistsError:
                # the run's previous actor, killed or gone with its node, until the cluster lets go of its name
                if time.monotonic() > deadline:  # the orchestrator marks the run failed with this line
                    raise OSError(f"Ray still holds the actor name {actor_name(run_dir)!r} of this run's previous "
                                  f"actor after {NAME_RELEASE_WAIT:.0f} s; run the grid again to resume") from None
                time.sleep(0.25)
        worker_args = [str(run_dir)] + (["--device", "cuda:0"] if gpus else [])  # Ray pins the GPU it gives
        node = actor.node.remote()  # before run: an actor's calls run one at a time, in order
        if self.store == "ship":
            result = actor.run.remote(str(run_dir), worker_args, request.threads, self.sink(),
                                      seed_files(Path(run_dir)))
        else:
            result = actor.run.remote(str(run_dir), worker_args, request.threads)
        return actor, node, result

    def adopt(self, run_dir: Path, on_line: Callable[[str], None]) -> RayHandle | None:
        """The live actor of a run an earlier orchestrator started, or None."""
        try:
            actor = self.ray.get_actor(actor_name(run_dir), namespace=NAMESPACE)
        except ValueError:
            return None
        beat = RunDir(run_dir).heartbeat()  # where it runs (its node() would queue behind its run)
        return RayHandle(self.ray, actor, None, actor.wait.remote(), Path(run_dir), on_line,
                         host=beat.host if beat else "")


def _pythonpath() -> str:
    """This checkout first, then what the head had: the nodes import the same engine (same path everywhere)."""
    extra = os.environ.get("PYTHONPATH", "")
    return PROJECT_ROOT + (os.pathsep + extra if extra else "")

