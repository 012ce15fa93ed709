"""Wall time per phase of a run, and since its process started: what "done in Ns" reports.

Phases: ``startup`` (process start to the trainer's first line: the interpreter,
torch and timm imports), ``data`` (the dataset opened, decoded into the cache
if it had to be, and its splits on the device), ``model`` (built, weights
loaded), ``features`` (the frozen-prefix activation cache), ``train`` (epochs,
validation included, feature caching excluded) and ``test``.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

PHASES = ("startup", "data", "model", "features", "train", "test")


def process_start_time() -> float | None:
    """Unix time this process started (Linux ``/proc``), or None where that can't be read."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        # field 22 of stat: start time in clock ticks after boot; uptime has 10 ms resolution
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - max(0.0, age)
    except (OSError, ValueError, IndexError):
        return None


class PhaseTimes:
    """Seconds spent in each phase; ``total()`` counts from the process start (or from this object's making)."""

    def __init__(self, started: float | None = None):
        now = time.time()
        self.started = started if started is not None else (process_start_time() or now)
        self.seconds: dict[str, float] = {}
        if self.started < now:
            self.seconds["startup"] = now - self.started

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + max(0.0, seconds)

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def total(self) -> float:
        return max(0.0, time.time() - self.started)

    def as_dict(self) -> dict[str, float]:
        return {k: round(self.seconds[k], 3) for k in PHASES if k in self.seconds}
