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
import signal
from pathlib import Path
from typing import Callable

from engine.errors import UserError
from engine.launcher import PROJECT_ROOT, EventTail, Resources
from engine.store import RunDir

NAMESPACE = "finetune-tui"  # detached actors' namespace: a restarted orchestrator looks its runs up there
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

    def run(self, run_dir: str, worker_args: list[str], threads: int) -> int:
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

    def __init__(self, address: str = ""):
        self.ray = ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=address or None, namespace=NAMESPACE, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
            except ConnectionError as exc:
                raise UserError(f"can't reach the Ray cluster at {address or 'this machine'}: {exc}") from None
        self._actor = ray.remote(RunActor)

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
        gpus = 1 if request.gpus and self.has_gpus() else 0
        env = {"PYTHONPATH": _pythonpath()}
        if request.threads:
            env.update(OMP_NUM_THREADS=str(request.threads), MKL_NUM_THREADS=str(request.threads))
        actor = self._actor.options(name=actor_name(run_dir), namespace=NAMESPACE, lifetime="detached",
                                    num_cpus=request.cpus, num_gpus=gpus, max_restarts=0,
                                    runtime_env={"env_vars": env}).remote()
        worker_args = [str(run_dir)] + (["--device", "cuda:0"] if gpus else [])  # Ray pins the GPU it gives
        node = actor.node.remote()  # before run: an actor's calls run one at a time, in order
        result = actor.run.remote(str(run_dir), worker_args, request.threads)
        return RayHandle(self.ray, actor, node, result, Path(run_dir), on_line)

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

