"""How a failed run is labelled: one ``kind`` (engine.errors.FAILURE_KINDS) and one line a user can act on.

Decided by exception type; the only text matched is PyTorch's own out-of-memory
wording for CPU allocations, which has no exception type of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def classify(exc: BaseException, run_dir: str | Path, batch_size: int | None = None,
             image_size: int | None = None) -> Failure:
    """The failure kind and message of an exception that ended a run in ``run_dir``."""
    if isinstance(exc, DiskFull):
        return Failure("disk_full", str(exc))
    if is_disk_full(exc):
        return Failure("disk_full", disk_full_message(Path(run_dir)))
    if isinstance(exc, UserError):
        return Failure("user", _first_line(exc))
    smaller = f"try --batch-size {max(1, batch_size // 2)}" if batch_size else "try a smaller --batch-size"
    if is_cuda_oom(exc):
        size = f", image size {image_size}" if image_size else ""
        return Failure("oom", f"out of GPU memory at batch size {batch_size}{size}: {smaller}, "
                              "or lower --image-size or --concurrency")
    if is_host_oom(exc):
        return Failure("oom", f"out of host memory ({_first_line(exc, 120)}): {smaller}, or lower --concurrency")
    return Failure("crash", f"{type(exc).__name__}: {_first_line(exc, 200)} (full traceback in {RunDir.TRACEBACK})")
