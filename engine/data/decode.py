"""Decoding image files into stored rows: Pillow in threads, each row handed to a sink as soon as it is ready.

Pillow decodes and resizes with the GIL released, so threads use every core.
A file that can't be read doesn't stop the others: every unreadable file is
collected with its reason, and the caller decides (``data.on_bad_image``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..preprocess import Storage, store

CHUNK = 256  # at most this many files handed to the pool at a time: bounded memory, progress between chunks

Progress = Callable[[int, int], None]  # (done, total); may raise to stop (a cancelled run)


def unreadable_reason(exc: BaseException, path: Path | None = None) -> str:
    """Pillow's complaint in a few words (without the file's path, which the message names already)."""
    text = str(exc)
    if path is not None:
        text = text.replace(f"'{path}'", "").replace(str(path), "")
    return " ".join(text.split()).rstrip(" :")[:120] or type(exc).__name__


def read_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def read_image(path: Path, stored: Storage) -> np.ndarray:
    """One file as a stored uint8 (3, S, S) row: EXIF orientation, RGB, bicubic centre crop (engine.preprocess)."""
    from PIL import Image

    with Image.open(path) as im:
        return store(im, stored)


def decoding_threads() -> int:
    return max(1, min(16, os.cpu_count() or 1))


def decode_files(files: Sequence[Path], stored: Storage, put: Callable[[int, np.ndarray], None],
                 progress: Progress | None = None, threads: int | None = None) -> dict[int, str]:
    """Decode ``files[i]`` into ``put(i, row)`` for every i; returns {i: reason} of the unreadable ones."""
    errors = read_errors()
    bad: dict[int, str] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            row = read_image(files[i], stored)
        except errors as exc:
            with lock:
                bad[i] = unreadable_reason(exc, files[i])
            return
        put(i, row)

    n = len(files)
    workers = threads or decoding_threads()
    chunk = max(2 * workers, min(CHUNK, n // 100))  # about 100 progress points on a big folder
    last = 0.0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, n, chunk):
            list(pool.map(one, range(start, min(n, start + chunk))))
            now = time.monotonic()
            if progress is not None and (now - last >= 0.5 or start + chunk >= n):
                last = now
                progress(min(n, start + chunk), n)
    return bad


def decode_in_memory(files: Sequence[Path], stored: Storage, progress: Progress | None = None
                     ) -> tuple[np.ndarray, dict[int, str]]:
    """Every file as rows of one in-memory array (rows of unreadable files stay zero)."""
    x = np.zeros((len(files), 3, stored.size, stored.size), dtype=np.uint8)

    def put(i: int, row: np.ndarray) -> None:
        x[i] = row

    return x, decode_files(files, stored, put, progress)
