"""The dataset cache: each (dataset, recipe, storage size) decoded once, memory-mapped by every run after.

An entry is found by its key (what was decoded) and the fingerprint of its
source; an entry of the same key with another fingerprint is stale (the source
changed) and is deleted once the new one is in place. One process decodes a
key at a time (``<key>.lock``); the others wait, reading its progress, and then
open what it built. An entry is written in a staging folder and renamed into
place whole, its ``meta.json`` last, so a kill never leaves half an entry
where readers look. On open, sizes, shapes and digests are checked (the label
arrays in full, the image rows at 64 sampled blocks plus the file size), and an
entry that fails is rebuilt. File names: ``engine.store.DatasetCacheDir``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import DiskFull, StoreError, is_disk_full
from engine.store import CacheEntryDir, DatasetCacheDir, atomic_write_json, read_json_object

from ..preprocess import Storage
from .arrays import PARTS, SourceArrays
from .errors import DataError

log = logging.getLogger(__name__)

FORMAT = "finetune-tui-dataset/1"
SAMPLE_BLOCKS, SAMPLE_BYTES = 64, 1 << 16
SKIPPED_ROW = -1  # parts.npy value of a row no split may use (an unreadable file)


class CacheCorrupt(Exception):
    """An entry on disk doesn't check out; it is rebuilt."""


@dataclass(frozen=True)
class Described:
    """What a builder knows besides the rows: labels, parts, and the dataset's description."""

    labels: np.ndarray  # int64 (N,)
    index: np.ndarray  # int64 (N,)
    part: np.ndarray  # int8 (N,): position in PARTS, or SKIPPED_ROW
    classes: tuple[str, ...]
    source: str
    storage: Storage | None
    skipped: tuple[tuple[str, str], ...] = ()


class EntryWriter:
    """Rows written straight into ``images.npy`` of a staging folder (pwrite: no row stays in this process)."""

    def __init__(self, staging: CacheEntryDir, n_rows: int, row_shape: tuple[int, ...]):
        self.fd = -1
        self.entry, self.n_rows, self.row_shape = staging, n_rows, tuple(row_shape)
        self.row_bytes = int(np.prod(self.row_shape))
        staging.path.mkdir(parents=True, exist_ok=True)
        with _disk_full_as(staging.path):
            # a standard .npy header, then a sparse file of the final size; rows are pwritten into it
            with open(staging.images, "wb") as fh:
                np.lib.format.write_array_header_1_0(
                    fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                         "shape": (n_rows, *self.row_shape)})
                self.offset = fh.tell()
                fh.truncate(self.offset + n_rows * self.row_bytes)
            self.fd = os.open(staging.images, os.O_WRONLY)

    def put(self, i: int, row: np.ndarray) -> None:
        data = np.ascontiguousarray(row, dtype=np.uint8)
        if data.size != self.row_bytes:
            raise ValueError(f"row {i} has {data.size} bytes, expected {self.row_bytes}")
        with _disk_full_as(self.entry.path):
            os.pwrite(self.fd, memoryview(data).cast("B"), self.offset + i * self.row_bytes)

    def put_rows(self, start: int, rows: np.ndarray, chunk: int = 4096) -> None:
        for i in range(0, len(rows), chunk):
            block = np.ascontiguousarray(rows[i: i + chunk], dtype=np.uint8)
            with _disk_full_as(self.entry.path):
                os.pwrite(self.fd, memoryview(block).cast("B"), self.offset + (start + i) * self.row_bytes)

    def finish(self, fingerprint: str, described: Described) -> None:
        d = described
        with _disk_full_as(self.entry.path):
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            for path, array in ((self.entry.labels, d.labels.astype(np.int64)),
                                (self.entry.index, d.index.astype(np.int64)), (self.entry.parts, d.part.astype(np.int8))):
                if len(array) != self.n_rows:
                    raise ValueError(f"{path.name}: {len(array)} values for {self.n_rows} rows")
                np.save(path, array)
            meta = {
                "format": FORMAT, "fingerprint": fingerprint, "shape": [self.n_rows, *self.row_shape],
                "bytes": os.path.getsize(self.entry.images), "offset": self.offset,
                "classes": list(d.classes), "source": d.source,
                "storage": d.storage.to_dict() if d.storage is not None else None,
                "skipped": [list(s) for s in d.skipped],
                "digests": {"images": sampled_digest(self.entry.images),
                            **{p.name: file_digest(p) for p in (self.entry.labels, self.entry.index, self.entry.parts)}},
                "created": time.time(),
            }
            atomic_write_json(self.entry.meta, meta)

    def abort(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


class _disk_full_as:
    """A write that fails for lack of space becomes DiskFull naming the cache folder."""

    def __init__(self, where: Path):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is not None and isinstance(exc, OSError) and is_disk_full(exc):
            raise DiskFull(self.where) from exc
        return False


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sampled_digest(path: Path) -> str:
    """sha256 of the file size and 64 blocks of 64 KB spread evenly over the file (first and last included)."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        for k in range(SAMPLE_BLOCKS):
            offset = 0 if size <= SAMPLE_BYTES else (size - SAMPLE_BYTES) * k // (SAMPLE_BLOCKS - 1)
            fh.seek(offset)
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def open_entry(entry: CacheEntryDir, fingerprint: str) -> SourceArrays | None:
    """The entry's arrays (images memory-mapped), None when it isn't there; CacheCorrupt when it doesn't check."""
    if not entry.complete():
        return None
    try:
        meta = read_json_object(entry.meta)
        if meta.get("format") != FORMAT:
            raise CacheCorrupt(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("fingerprint") != fingerprint:
            raise CacheCorrupt("fingerprint differs from the folder name's")
        digests = meta["digests"]
        if os.path.getsize(entry.images) != meta["bytes"]:
            raise CacheCorrupt(f"{entry.IMAGES} is {os.path.getsize(entry.images)} bytes, expected {meta['bytes']}")
        if sampled_digest(entry.images) != digests["images"]:
            raise CacheCorrupt(f"{entry.IMAGES} doesn't match its digest")
        for path in (entry.labels, entry.index, entry.parts):
            if file_digest(path) != digests[path.name]:
                raise CacheCorrupt(f"{path.name} doesn't match its digest")
        images = np.load(entry.images, mmap_mode="r")
        labels, index, part = (np.load(p, allow_pickle=False) for p in (entry.labels, entry.index, entry.parts))
        if list(images.shape) != meta["shape"] or images.dtype != np.uint8 or images.offset != meta["offset"]:
            raise CacheCorrupt(f"{entry.IMAGES} holds {images.dtype} {list(images.shape)}, expected {meta['shape']}")
        storage = Storage.from_dict(meta["storage"]) if meta["storage"] is not None else None
        return SourceArrays(images, labels.astype(np.int64), index.astype(np.int64), parts_of(part),
                            tuple(meta["classes"]),
                            meta["source"], storage, tuple((str(p), str(r)) for p, r in meta["skipped"]),
                            file=entry.images, offset=int(meta["offset"]))
    except CacheCorrupt:
        raise
    except (StoreError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CacheCorrupt(f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}") from None


class MemoryRows:
    """EntryWriter's twin for a dataset decoded without the cache: rows of one in-memory array."""

    def __init__(self, n_rows: int, row_shape: tuple[int, ...]):
        self.images = np.zeros((n_rows, *row_shape), dtype=np.uint8)

    def put(self, i: int, row: np.ndarray) -> None:
        self.images[i] = row

    def put_rows(self, start: int, rows: np.ndarray) -> None:
        self.images[start: start + len(rows)] = rows


OpenRows = Callable[[int, tuple], "EntryWriter | MemoryRows"]  # (rows, row shape) -> where rows are put


@dataclass(frozen=True)
class Plan:
    """How to make one entry: its key and fingerprint, and a builder that opens its rows (``open_rows(n,
    shape)``), puts every row there and says what they are."""

    key: str
    fingerprint: str
    build: Callable[[OpenRows], Described]


def parts_of(part: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.flatnonzero(part == k).astype(np.int64) for k, name in enumerate(PARTS) if (part == k).any()}


def in_memory(plan: Plan) -> SourceArrays:
    """The plan built in memory, no cache involved (``data.cache = false``)."""
    made: list[MemoryRows] = []

    def open_rows(n: int, shape: tuple) -> MemoryRows:
        made.append(MemoryRows(n, shape))
        return made[-1]

    d = plan.build(open_rows)
    return SourceArrays(made[0].images, d.labels.astype(np.int64), d.index.astype(np.int64), parts_of(d.part),
                        tuple(d.classes), d.source, d.storage, tuple(d.skipped), notes={"cache": "off"})


Waiting = Callable[[int, int], None]  # (done, total) of another process's decode; may raise (cancel)


def get(cache: DatasetCacheDir, plan: Plan, waiting: Waiting | None = None, poll: float = 0.5) -> SourceArrays:
    """The plan's entry: opened when it is there and checks out, else built once (other processes wait)."""
    entry = cache.entry(plan.key, plan.fingerprint)
    arrays = _try_open(entry, plan.fingerprint, notes={"cache": "hit"})
    if arrays is not None:
        return arrays
    try:
        cache.path.mkdir(parents=True, exist_ok=True)
        probe = cache.path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(cache.path) from exc
        raise DataError(f"can't write the dataset cache in {cache.path} ({exc.strerror or exc}); set data.cache_dir "
                        f"to a writable folder, or data.cache = false to decode in memory for each run") from None
    lock = cache.lock(plan.key)
    waited = False
    while not lock.acquire():
        waited = True
        if waiting is not None:
            done, total = _progress(cache.progress_file(plan.key))
            waiting(done, total)
        time.sleep(poll)
    try:
        arrays = _try_open(entry, plan.fingerprint, notes={"cache": "waited" if waited else "hit"}, remove_bad=True)
        if arrays is not None:
            return arrays
        t0 = time.perf_counter()
        _build(cache, entry, plan)
        log.info("dataset cache: built %s in %.1f s", entry.path, time.perf_counter() - t0)
        _remove_stale(cache, plan.key, entry)
    finally:
        cache.progress_file(plan.key).unlink(missing_ok=True)
        lock.release()
    arrays = _try_open(entry, plan.fingerprint, notes={"cache": "built"})
    if arrays is None:
        raise StoreError(f"dataset cache entry {entry.path} vanished right after it was built")
    return arrays


def _try_open(entry: CacheEntryDir, fingerprint: str, notes: dict, remove_bad: bool = False) -> SourceArrays | None:
    try:
        arrays = open_entry(entry, fingerprint)
    except CacheCorrupt as exc:
        if not remove_bad:
            return None  # checked again, and removed, under the lock
        log.warning("dataset cache entry %s is corrupt (%s); rebuilding it", entry.path, exc)
        shutil.rmtree(entry.path, ignore_errors=True)
        return None
    if arrays is None:
        return None
    arrays.notes.update(notes)
    return arrays


def _build(cache: DatasetCacheDir, entry: CacheEntryDir, plan: Plan) -> None:
    for old in cache.stagings(plan.key):  # left by a builder that died (we hold the key's lock)
        shutil.rmtree(old, ignore_errors=True)
    staging = cache.staging(plan.key)
    writers: list[EntryWriter] = []

    def open_rows(n: int, shape: tuple) -> EntryWriter:
        writers.append(EntryWriter(staging, n, shape))
        return writers[-1]

    try:
        described = plan.build(open_rows)
        if not writers:
            raise ValueError(f"the builder of {plan.key} wrote no rows")
        writers[-1].finish(plan.fingerprint, described)
        if entry.path.exists():  # a corrupt or half-removed entry of the same fingerprint
            shutil.rmtree(entry.path, ignore_errors=True)
        os.rename(staging.path, entry.path)
    except BaseException:
        for writer in writers:
            writer.abort()
        shutil.rmtree(staging.path, ignore_errors=True)
        raise


def _remove_stale(cache: DatasetCacheDir, key: str, keep: CacheEntryDir) -> None:
    """Entries of ``key`` with another fingerprint: their source changed. Runs still reading one keep their
    open files (unlinking doesn't take the data from under a memory map)."""
    for old in cache.entries(key):
        if old.path != keep.path:
            log.info("dataset cache: removing stale %s", old.path)
            shutil.rmtree(old.path, ignore_errors=True)


def report_progress(cache: DatasetCacheDir, key: str, done: int, total: int) -> None:
    """The decoder's progress, for the runs waiting on its lock (best effort)."""
    try:
        atomic_write_json(cache.progress_file(key), {"done": done, "total": total, "pid": os.getpid()})
    except (OSError, StoreError):
        pass


def _progress(path: Path) -> tuple[int, int]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return int(obj["done"]), int(obj["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0
