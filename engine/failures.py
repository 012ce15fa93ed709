"""How a failed run is labelled: one ``kind`` (engine.errors.FAILURE_KINDS) and one line a user can act on.

Decided by exception type; the only text matched is PyTorch's own out-of-memory
wording for CPU allocations, which has no exception type of its own. A worker
the kernel's out-of-memory killer ended leaves no exception at all: the
orchestrator samples each live worker (``MemoryWatch``: its peak RSS, its memory
cgroup's limit and OOM-kill counter, cgroup v2 or v1) and reads a SIGKILL as
``oom`` when that counter rose or the peak came near the limit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import DiskFull, UserError, disk_full_message, is_disk_full
from engine.store.run_dir import RunDir

CPU_OOM_TEXT = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


@dataclass(frozen=True)
class Failure:
    kind: str  # user, oom, disk_full, killed, crash
    message: str


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def is_cuda_oom(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def is_host_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(t in str(exc) for t in CPU_OOM_TEXT))


def _smaller(batch_size: int | None) -> str:
    return f"try --batch-size {max(1, batch_size // 2)}" if batch_size else "try a smaller --batch-size"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def classify(exc: BaseException, run_dir: str | Path, batch_size: int | None = None,
             image_size: int | None = None) -> Failure:
    """The failure kind and message of an exception that ended a run in ``run_dir``."""
    if isinstance(exc, DiskFull):
        return Failure("disk_full", str(exc))
    if is_disk_full(exc):
        return Failure("disk_full", disk_full_message(Path(run_dir)))
    if isinstance(exc, UserError):
        return Failure("user", _first_line(exc))
    at = f" at batch size {batch_size}" if batch_size else ""
    if is_cuda_oom(exc):
        size = f", image size {image_size}" if image_size else ""
        return Failure("oom", f"out of GPU memory{at}{size}: {_smaller(batch_size)}, "
                              "or lower --image-size or --concurrency")
    if is_host_oom(exc):
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        what = f"a {_mb(int(asked.group(1)))} allocation failed" if asked else _first_line(exc, 120)
        limit = memory_limit(os.getpid(), address_space=True)
        of = f" ({limit[1]} {_mb(limit[0])})" if limit else ""
        return Failure("oom", f"out of host memory{at}: {what}{of}: {_smaller(batch_size)}, or lower --concurrency")
    return Failure("crash", f"{type(exc).__name__}: {_first_line(exc, 200)} (full traceback in {RunDir.TRACEBACK})")


# --- the kernel's OOM killer --------------------------------------------------------------------------

NEAR_LIMIT = 0.9  # a SIGKILLed worker whose peak RSS reached this share of its memory limit was most likely OOM-killed
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _counter(text: str | None, name: str) -> int | None:
    """``name N`` from a flat-keyed cgroup file (memory.events, memory.oom_control)."""
    match = re.search(rf"^{name} (\d+)$", text or "", re.M)
    return int(match.group(1)) if match else None


def _number(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() and int(text) < UNLIMITED else None  # "max" / huge = no limit


@dataclass(frozen=True)
class MemoryCgroup:
    """One memory cgroup folder and the names of its files (v2 or v1)."""

    path: Path
    v2: bool

    def oom_kills(self) -> int | None:
        return _counter(_read(self.path / ("memory.events" if self.v2 else "memory.oom_control")), "oom_kill")

    def limit(self) -> int | None:
        return _number(_read(self.path / ("memory.max" if self.v2 else "memory.limit_in_bytes")))


def _mounts() -> list[tuple[str, Path, bool]]:
    """(root inside the hierarchy, mount point, is v2) of every cgroup mount that has the memory controller."""
    out = []
    for line in (_read(Path("/proc/self/mountinfo")) or "").splitlines():
        left, _, right = line.partition(" - ")
        parts, kinds = left.split(), right.split()
        if len(parts) < 5 or len(kinds) < 3:
            continue
        if kinds[0] == "cgroup2" or (kinds[0] == "cgroup" and "memory" in kinds[2].split(",")):
            out.append((parts[3], Path(parts[4]), kinds[0] == "cgroup2"))
    return out


def memory_cgroups(pid: int) -> list[MemoryCgroup]:
    """The memory cgroups holding ``pid``, its own first, then each parent up to the mount's root."""
    lines = (_read(Path(f"/proc/{pid}/cgroup")) or "").splitlines()
    found = []
    for root, mount, v2 in _mounts():
        for line in lines:
            _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
            if (v2 and controllers == "") or (not v2 and "memory" in controllers.split(",")):
                rel = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
                here = mount if rel in (".", "") else mount / rel
                chain = [here, *[p for p in here.parents if p == mount or mount in p.parents]]
                groups = [MemoryCgroup(p, v2) for p in chain]
                if groups and groups[0].oom_kills() is not None:  # a v2 cgroup without the memory controller has none
                    found += groups
    return found


def memory_limit(pid: int, address_space: bool = False,
                 groups: list[MemoryCgroup] | None = None) -> tuple[int, str] | None:
    """The tightest limit on ``pid``'s memory, (bytes, what it is): its memory cgroups' (``groups`` where
    already read), the machine's RAM, and with ``address_space`` its RLIMIT_AS (``ulimit -v``: what makes an
    allocation fail, not a kill)."""
    limits = [(g.limit(), "memory limit") for g in (memory_cgroups(pid) if groups is None else groups)]
    meminfo = re.search(r"^MemTotal:\s+(\d+) kB", _read(Path("/proc/meminfo")) or "", re.M)
    if meminfo:
        limits.append((int(meminfo.group(1)) * 1024, "RAM"))
    if address_space:
        rlimit = re.search(r"^Max address space\s+(\d+)", _read(Path(f"/proc/{pid}/limits")) or "", re.M)
        limits.append((int(rlimit.group(1)) if rlimit else None, "address-space limit"))
    limits = [(n, what) for n, what in limits if n]
    return min(limits) if limits else None


def peak_rss(pid: int) -> int | None:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    match = re.search(r"^VmHWM:\s+(\d+) kB", _read(Path(f"/proc/{pid}/status")) or "", re.M)
    return int(match.group(1)) * 1024 if match else None


@dataclass
class MemoryWatch:
    """Samples one live worker so that, once it is gone, a SIGKILL from the OOM killer can be told apart.

    ``sample`` while it lives (cheap: two small /proc files); the cgroup's OOM-kill counters are
    taken the first time each cgroup is seen, so a kill after that shows as a rise.
    """

    pid: int
    peak: int = 0  # bytes
    limit: int | None = None
    baseline: dict = field(default_factory=dict)  # MemoryCgroup -> oom_kill count when first seen

    def sample(self) -> None:
        peak = peak_rss(self.pid)
        if peak is None:  # gone already (or not Linux)
            return
        self.peak = max(self.peak, peak)
        groups = memory_cgroups(self.pid)
        for group in groups:
            if group not in self.baseline:
                self.baseline[group] = group.oom_kills()
        if groups or self.limit is None:
            # the groups just read, and the tightest limit seen: a worker the OOM killer is ending may already
            # show the root cgroup (older kernels) or none, and must not turn its limit into the machine's RAM
            limit = memory_limit(self.pid, groups=groups)
            if limit:
                self.limit = min(self.limit or limit[0], limit[0])

    def oom_killed(self) -> bool:
        """After the worker died of SIGKILL: did the OOM killer do it?"""
        for group, before in self.baseline.items():
            after = group.oom_kills()
            if before is not None and after is not None and after > before:
                return True
        return bool(self.limit and self.peak >= NEAR_LIMIT * self.limit)

    def failure(self, batch_size: int | None) -> Failure:
        """The ``oom`` failure of a worker the OOM killer ended, with its memory figures."""
        figures = [f"peak {_mb(self.peak)}"] if self.peak else []
        if self.limit:
            figures.append(f"memory limit {_mb(self.limit)}")
        at = f" at batch size {batch_size}" if batch_size else ""
        return Failure("oom", f"killed by the kernel's out-of-memory killer{at} ({', '.join(figures) or 'no figures'}): "
                              f"{_smaller(batch_size)}, or lower --concurrency")
