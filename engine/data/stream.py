"""Getting a split's rows onto the training device: all at once when they fit, batch by batch when not.

``feeds()`` decides per split from its size and the device budget
(``data.device_budget_mb``, default ``budget()``): train first, then val, then
test are held on the device while they fit; the others are streamed. Both
kinds hand out the same uint8 rows for the same indices, so a seed gives the
same batches either way.

Rows are read from the dataset cache's ``images.npy`` with ``os.preadv``
(a run of consecutive rows is one call scattering into its batch positions),
not through the memory map, so pages read for one batch don't pile up in the
process's resident memory. Streaming reads ``PREFETCH`` batches ahead in
threads into reused buffers: on CUDA pinned host buffers, copied on a side
stream that the training stream waits for (``torch.cuda.Event``); on CPU the
buffer is the batch.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .arrays import SourceArrays
from .select import Rows

log = logging.getLogger(__name__)

CUDA_SHARE = 0.5  # of the GPU memory free at start-up: the rest is the model's, its activations' and the cache's
CPU_SHARE, CPU_CAP = 0.25, 1 << 30  # of MemAvailable, and at most: pages streamed from the cache cost no RSS
PREFETCH = 2  # batches read ahead when streaming
GATHER_ROWS = 2048  # rows per read task when a whole split is read into memory
IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024)


def available_host_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    try:
        with open(meminfo, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def budget(device: torch.device, configured_mb: int = 0) -> int:
    """Bytes of split images this run may hold on ``device``: ``configured_mb``, or a share of free memory."""
    if configured_mb > 0:
        return configured_mb << 20
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_SHARE)
    free = available_host_bytes()
    return CPU_CAP if free is None else min(CPU_CAP, int(free * CPU_SHARE))


def residency(sizes: dict[str, int], limit: int, mode: str) -> dict[str, bool]:
    """Which splits are held on the device (True) and which are streamed, in the order train, val, test."""
    if mode == "never":
        return {k: True for k in sizes}
    if mode == "always":
        return {k: False for k in sizes}
    held, used = {}, 0
    for name, size in sizes.items():
        held[name] = used + size <= limit
        used += size if held[name] else 0
    return held


# --- reading rows -----------------------------------------------------------------------


class RowReader:
    """Rows of a dataset's images into a caller's buffer: from the cache file, or from an in-memory array."""

    def __init__(self, arrays: SourceArrays):
        self.images = arrays.images
        self.row_shape = arrays.row_shape
        self.row_bytes = arrays.row_bytes
        self.offset = arrays.offset
        self.fd = os.open(arrays.file, os.O_RDONLY) if arrays.file is not None else -1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """``out[j] = images[rows[j]]`` for every j; ``out`` is uint8 (len(rows), *row_shape), C-contiguous."""
        if self.fd < 0:
            np.take(self.images, rows, axis=0, out=out)
            return
        flat = out.reshape(len(rows), self.row_bytes)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        # runs of consecutive rows: one preadv each, scattering the rows to their places in the batch
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            for start in range(0, len(run), IOV_MAX):
                part = run[start: start + IOV_MAX]
                buffers = [memoryview(flat[order[j]]) for j in part]
                offset = self.offset + int(sorted_rows[part[0]]) * self.row_bytes
                got = os.preadv(self.fd, buffers, offset)
                if got != len(part) * self.row_bytes:
                    raise OSError(f"short read from the dataset cache ({got} of {len(part) * self.row_bytes} "
                                  f"bytes at {offset}); delete the cache folder to rebuild it")


# --- splits on the device -----------------------------------------------------------------


class Feed:
    """A split as the trainer sees it: labels on the device, and uint8 image batches for index tensors."""

    y: torch.Tensor
    streamed: bool

    def __len__(self) -> int:
        return len(self.y)

    def head(self, k: int) -> torch.Tensor:
        """The first ``k`` rows (probes: forward_units, activation cache size)."""
        return next(self.batches(torch.arange(min(k, len(self))), k))[1].clone()  # a streamed batch's buffer is reused

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(index, uint8 images on the device) for ``order`` cut in batches, in order."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class HeldFeed(Feed):
    """Every row on the device, read once at set-up."""

    streamed = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def batches(self, order, batch_size):
        for idx in order.split(batch_size):
            yield idx, self.x[idx.to(self.x.device)]


@dataclass
class _Slot:
    host: torch.Tensor  # (batch_size, *row_shape) uint8: pinned on CUDA
    copied: torch.cuda.Event | None = None  # the last copy out of ``host`` (CUDA)


class StreamedFeed(Feed):
    """Rows read from the cache file batch by batch, ``PREFETCH`` batches ahead, into reused buffers."""

    streamed = True

    def __init__(self, reader: RowReader, rows: np.ndarray, y: torch.Tensor, device: torch.device,
                 prefetch: int = PREFETCH):
        self.reader, self.rows, self.y, self.device = reader, rows, y, device
        self.cuda = device.type == "cuda"
        self.prefetch = max(1, prefetch)
        self._pool = ThreadPoolExecutor(max_workers=self.prefetch, thread_name_prefix="feed")
        self._slots: list[_Slot] = []
        self._slot_rows = 0
        self._stream = torch.cuda.Stream(device) if self.cuda else None

    def _ensure_slots(self, batch_size: int) -> None:
        if self._slot_rows >= batch_size and len(self._slots) == self.prefetch + 1:
            return
        shape = (batch_size, *self.reader.row_shape)
        # prefetch in flight + the one the trainer holds: a slot is refilled only after its batch was let go
        self._slots = [_Slot(torch.empty(shape, dtype=torch.uint8, pin_memory=self.cuda))
                       for _ in range(self.prefetch + 1)]
        self._slot_rows = batch_size

    def _fill(self, slot: _Slot, idx: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        n = len(idx)
        if slot.copied is not None:
            slot.copied.synchronize()  # the previous batch's copy out of this buffer is done
        host = slot.host[:n]
        self.reader.read(self.rows[idx.numpy()], host.numpy())
        if not self.cuda:
            return host, None
        with torch.cuda.stream(self._stream):
            dev = host.to(self.device, non_blocking=True)
            slot.copied = torch.cuda.Event()
            slot.copied.record(self._stream)
        return dev, slot.copied

    def batches(self, order, batch_size):
        chunks = list(order.split(batch_size))
        if not chunks:
            return
        self._ensure_slots(batch_size)
        pending: deque[tuple[torch.Tensor, Future]] = deque()
        nxt = 0

        def submit() -> None:
            nonlocal nxt
            if nxt < len(chunks):
                slot = self._slots[nxt % len(self._slots)]
                pending.append((chunks[nxt], self._pool.submit(self._fill, slot, chunks[nxt])))
                nxt += 1

        try:
            for _ in range(self.prefetch):
                submit()
            while pending:
                idx, future = pending.popleft()
                x, copied = future.result()
                if copied is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(copied)
                    x.record_stream(current)  # the caching allocator keeps it until the training stream is done
                yield idx, x
                submit()  # the batch just handed out is let go when the caller comes back for the next one
        finally:
            for _, future in pending:  # an early exit (cancel, error): let reads in flight finish
                future.cancel()
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - the loop is ending on its own error already
                    pass

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def read_into_device(reader: RowReader, rows: np.ndarray, device: torch.device, threads: int = 2) -> torch.Tensor:
    """Every row of a split on ``device``, read in chunks (on CUDA through pinned host memory)."""
    out_shape = (len(rows), *reader.row_shape)
    if device.type != "cuda":
        x = torch.empty(out_shape, dtype=torch.uint8)
        view = x.numpy()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda s: reader.read(rows[s: s + GATHER_ROWS], view[s: s + GATHER_ROWS]),
                          range(0, len(rows), GATHER_ROWS)))
        return x
    x = torch.empty(out_shape, dtype=torch.uint8, device=device)
    staging = torch.empty((min(GATHER_ROWS, len(rows)), *reader.row_shape), dtype=torch.uint8, pin_memory=True)
    for s in range(0, len(rows), GATHER_ROWS):
        part = rows[s: s + GATHER_ROWS]
        reader.read(part, staging[: len(part)].numpy())
        x[s: s + len(part)].copy_(staging[: len(part)], non_blocking=True)
        torch.cuda.current_stream(device).synchronize()  # staging is reused by the next chunk
    return x


@dataclass(frozen=True)
class FeedPlan:
    held: dict[str, bool]  # split -> held on the device
    sizes: dict[str, int]  # split -> bytes of its uint8 images
    limit: int  # the budget the decision was made against (auto)
    mode: str = "auto"  # data.stream, or "memory": decoded without the cache, nothing to stream from

    def describe(self) -> str:
        parts = [f"{k} {'held' if v else 'streamed'} ({self.sizes[k] / 1e6:.0f} MB)" for k, v in self.held.items()]
        why = {"auto": f"device budget {self.limit / 1e6:.0f} MB",
               "memory": "decoded in memory (data.cache = false)"}.get(self.mode, f"data.stream = {self.mode}")
        return f"{', '.join(parts)}; {why}"


def feeds(arrays: SourceArrays, splits: dict[str, Rows], device: torch.device, configured_mb: int = 0,
          mode: str = "auto") -> tuple[dict[str, Feed], FeedPlan]:
    """Every split as a Feed: held on the device while the budget allows (train, then val, then test), streamed
    from the cache otherwise (a dataset decoded in memory, without the cache, is always held)."""
    sizes = {name: len(r) * arrays.row_bytes for name, r in splits.items()}
    limit = budget(device, configured_mb) if mode == "auto" else 0
    held = residency(sizes, limit, mode) if arrays.file is not None else {k: True for k in sizes}
    reader = RowReader(arrays)
    out: dict[str, Feed] = {}
    for name, r in splits.items():
        y = torch.from_numpy(r.y.astype(np.int64)).to(device)
        if held[name]:
            out[name] = HeldFeed(read_into_device(reader, r.rows, device), y)
        else:
            out[name] = StreamedFeed(reader, r.rows, y, device)
    if all(held.values()):
        reader.close()
    return out, FeedPlan(held, sizes, limit, mode if arrays.file is not None else "memory")
