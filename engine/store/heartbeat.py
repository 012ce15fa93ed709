"""Liveness that doesn't need ``flock`` to work across hosts: a heartbeat file the live worker rewrites.

A network filesystem may not honour ``flock`` between machines (NFS with
``nolock`` or ``local_lock``, some Lustre/GPFS set-ups): there a live remote
run would look dead, or a dead one alive. So a worker also rewrites
``heartbeat.json`` (``{"host", "pid", "ts"}``, its name owned by ``RunDir``)
every ``HEARTBEAT_EVERY`` seconds and removes it when it ends. A reader on
the worker's own host trusts the flock (the kernel drops it the moment the
process dies); a reader anywhere else trusts the heartbeat: older than
``HEARTBEAT_TIMEOUT`` is dead. The beat also names the folder the worker
trains in: a worker training in a copy of the run folder elsewhere (a Ray
node's scratch folder, ``ray_store = "ship"``) holds its flock there, so
a reader of this folder trusts the heartbeat then, whatever the host. Hosts compare their clocks here, so a cluster
keeps them in step (NTP), as every cluster does.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StoreError
from engine.store.atomic import atomic_write_json, read_json_object

HEARTBEAT_EVERY = 5.0  # seconds between a live worker's heartbeats
HEARTBEAT_TIMEOUT = 30.0  # a heartbeat older than this is a dead worker's
HOST_ENV = "FINETUNE_TUI_HOST"  # a launcher's name for the host a worker runs on (a cluster node's label)


def local_host() -> str:
    """This machine's name as runs record it (``FINETUNE_TUI_HOST`` when a launcher set one)."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


@dataclass(frozen=True)
class Heartbeat:
    host: str
    pid: int
    ts: float  # time.time() of the beat, on the worker's clock
    dir: str = ""  # the run folder the worker holds its flock in

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.ts)

    def fresh(self, now: float | None = None) -> bool:
        return self.age(now) <= HEARTBEAT_TIMEOUT


def read_heartbeat(path: Path) -> Heartbeat | None:
    """The last beat, or None when there is none (or it can't be read: a torn or foreign file)."""
    try:
        obj = read_json_object(path)
    except StoreError:  # missing, torn or unreadable: no beat to trust
        return None
    host, pid, ts, folder = obj.get("host"), obj.get("pid"), obj.get("ts"), obj.get("dir", "")
    if not isinstance(host, str) or not isinstance(pid, int) or not isinstance(ts, (int, float)) \
            or not isinstance(folder, str):
        return None
    return Heartbeat(host, pid, float(ts), folder)


def write_heartbeat(path: Path, host: str | None = None) -> None:
    atomic_write_json(path, {"host": host or local_host(), "pid": os.getpid(), "ts": time.time(),
                             "dir": os.path.realpath(Path(path).parent)})


class Heartbeater:
    """A daemon thread beating for this process until ``stop`` (which removes the file)."""

    def __init__(self, path: Path, every: float | None = None):
        self.path = Path(path)
        self.every = HEARTBEAT_EVERY if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> "Heartbeater":
        self._write()  # the first beat before the worker does anything else
        self._thread.start()
        return self

    def _write(self) -> None:
        try:
            write_heartbeat(self.path)
        except (OSError, StoreError):  # a full disk (DiskFull): this beat is missed, the next one tried
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.path.unlink(missing_ok=True)
