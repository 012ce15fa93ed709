"""The dataset cache's folder: every file name of a decoded dataset and of an image folder's scan.

``<store>/.cache/datasets/`` by default (``RunStore.dataset_cache``), or ``data.cache_dir``::

    <key>-<fingerprint>/        one decoded dataset (CacheEntryDir), never changed once in place
        images.npy              uint8 (N, C, H, W): every row of every part, memory-mapped by readers
        labels.npy  index.npy   int64 (N,): class and position in the source of each row
        parts.npy               int8 (N,): 0 train, 1 test, 2 val, -1 a row no split uses (unreadable file)
        meta.json               written last: format, fingerprint, parts (rows), classes, source, storage,
                                skipped files, digests (a folder without it is not an entry)
    <key>.lock                  flock held by the one process decoding <key>
    <key>.progress.json         {"done", "total"} of that decode, for the runs waiting on it
    .build-<key>-<pid>/         a decode being written; moved into place in one rename when complete
    scans/<fingerprint>.json    what the pre-flight scan of an image folder found (unreadable files)

``key`` is a readable name of what was decoded (dataset, storage size); the
fingerprint hashes the source (file paths, sizes, modification times) and the
recipe, so an entry of a changed source is stale and is replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.store.locks import FileLock


class CacheEntryDir:
    IMAGES, LABELS, INDEX, PARTS, META = "images.npy", "labels.npy", "index.npy", "parts.npy", "meta.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"CacheEntryDir({str(self.path)!r})"

    images = property(lambda self: self.path / self.IMAGES)
    labels = property(lambda self: self.path / self.LABELS)
    index = property(lambda self: self.path / self.INDEX)
    parts = property(lambda self: self.path / self.PARTS)
    meta = property(lambda self: self.path / self.META)

    def complete(self) -> bool:
        return self.meta.is_file()


class DatasetCacheDir:
    LOCK, PROGRESS, STAGING, SCANS = ".lock", ".progress.json", ".build-", "scans"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DatasetCacheDir({str(self.path)!r})"

    def entry(self, key: str, fingerprint: str) -> CacheEntryDir:
        return CacheEntryDir(self.path / f"{key}-{fingerprint}")

    def entries(self, key: str) -> list[CacheEntryDir]:
        """Every entry of ``key`` on disk, whatever its fingerprint (complete or not)."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        prefix = f"{key}-"
        return [CacheEntryDir(self.path / n) for n in sorted(names)
                if n.startswith(prefix) and "-" not in n[len(prefix):] and (self.path / n).is_dir()]

    def staging(self, key: str) -> CacheEntryDir:
        return CacheEntryDir(self.path / f"{self.STAGING}{key}-{os.getpid()}")

    def stagings(self, key: str) -> list[Path]:
        try:
            return [self.path / n for n in os.listdir(self.path) if n.startswith(f"{self.STAGING}{key}-")]
        except OSError:
            return []

    def lock_file(self, key: str) -> Path:
        return self.path / f"{key}{self.LOCK}"

    def lock(self, key: str) -> FileLock:
        return FileLock(self.lock_file(key))

    def progress_file(self, key: str) -> Path:
        return self.path / f"{key}{self.PROGRESS}"

    def scan_file(self, fingerprint: str) -> Path:
        return self.path / self.SCANS / f"{fingerprint}.json"
