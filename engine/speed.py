"""Per-device speed choices of a run: memory format, evaluation batch size, the allocator.

Measured on the project's 2-core x86 CPU (docs/FACTS, 2026-11-24, idle,
torch 2.14.1; re-measure with ``bench/cpu_formats.py``): EfficientNet-Lite0
``forward_features`` at 96 px ran at 222/158/106 img/s NCHW at batch 32/64/256
and 277/303/160 img/s channels_last; a full training step at 64 px, batch 64,
70 img/s NCHW and 79 channels_last. So channels_last is used on CPU as well as
on CUDA, and on CPU inference passes (the frozen-feature pass, validation,
test) run at batch 64 rather than 256: bigger batches fall out of the caches.
On CUDA big inference batches keep the GPU busy (256, or the training batch
if larger).

The allocator: glibc returns large freed blocks to the kernel (blocks above
its mmap threshold are unmapped on free; the heap top is trimmed), so every
training step faults its activations in again, page by page (the issue's
grid: 29.5 million minor faults, a third of its CPU time in the kernel). A
fixed 32 MB mmap threshold and a 1 GB trim threshold keep those pages in the
process for the next step: 1,434 faults per Lite0 step at 64 px with glibc's
defaults against 548 (``bench/cpu_formats.py --faults``, BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

CPU_EVAL_BATCH = 64
CUDA_EVAL_BATCH = 256

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's own upper limit for the threshold on 64-bit
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks for reuse (see the module doc); False where it can't be told."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators behave differently anyway
        return False
    ok = all(mallopt(param, value) == 1 for param, value in
             ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
    if not ok:
        log.debug("mallopt refused a setting; the allocator keeps its defaults")
    return ok


def channels_last(device_type: str, configured: bool) -> bool:
    """NHWC memory format: faster for these convnets on CUDA and, measured, on CPU too."""
    return configured and device_type in ("cuda", "cpu")


def eval_batch(device_type: str, train_batch: int) -> int:
    """Batch size of inference passes (feature cache, validation, test)."""
    if device_type == "cuda":
        return max(train_batch, CUDA_EVAL_BATCH)
    return CPU_EVAL_BATCH
