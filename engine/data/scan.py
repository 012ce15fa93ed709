"""The pre-flight scan of an image folder: every unreadable file, found once, before the grid starts.

Each file is opened and verified by Pillow (its header, and for PNG every
chunk's checksum), in threads, without decoding pixels; a JPEG is also decoded
in draft mode (at 1/8 scale, a small fraction of a full decode) because
``verify`` doesn't look past a JPEG's header and a truncated file would only
fail in the middle of a run. The result is kept in the dataset cache by the
folder's fingerprint, so the next scan of an unchanged folder costs one
listing. Anything the scan misses still fails, with every such file listed,
when the images are decoded.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.errors import StoreError
from engine.store import DatasetCacheDir, atomic_write_json, read_json_object

from .decode import read_errors, unreadable_reason
from .errors import DataError
from .folder import Tree, fingerprint

log = logging.getLogger(__name__)

FORMAT = "finetune-tui-scan/1"
INLINE = 20  # unreadable files named in the message itself; all of them are in the scan file
_JPEG = frozenset({".jpg", ".jpeg"})


def verify_file(path: Path) -> str:
    """Why ``path`` can't be read, or "" when it can."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if path.suffix.lower() in _JPEG:
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
            else:
                im.verify()
    except read_errors() as exc:
        return unreadable_reason(exc, path)
    return ""


def scan_threads() -> int:
    return max(4, min(32, 4 * (os.cpu_count() or 1)))  # mostly waiting on the disk


def unreadable(tree: Tree, cache: DatasetCacheDir | None = None) -> list[tuple[str, str]]:
    """(path, reason) of every unreadable image of the tree, read from the cache when the tree is unchanged."""
    fp = fingerprint(tree, FORMAT)
    record = cache.scan_file(fp) if cache is not None else None
    if record is not None:
        try:
            obj = read_json_object(record)
            if obj.get("format") == FORMAT and obj.get("fingerprint") == fp:
                return [(str(tree.root / rel), str(reason)) for rel, reason in obj["unreadable"]]
        except (StoreError, KeyError, TypeError, ValueError):
            pass  # missing or unreadable: scan again
    files = [f for listing in tree.parts().values() for f in listing.files]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=scan_threads()) as pool:
        reasons = list(pool.map(verify_file, files, chunksize=64))
    bad = [(str(f), r) for f, r in zip(files, reasons) if r]
    log.info("scanned %d images of %s in %.1f s: %d unreadable", len(files), tree.root, time.perf_counter() - t0,
             len(bad))
    if record is not None:
        try:
            atomic_write_json(record, {"format": FORMAT, "fingerprint": fp, "root": str(tree.root), "n": len(files),
                                       "unreadable": [[str(Path(p).relative_to(tree.root)), r] for p, r in bad]})
        except (OSError, StoreError) as exc:  # a read-only cache only costs the next scan
            log.warning("could not keep the scan of %s: %s", tree.root, exc)
    return bad


def unreadable_message(dataset: str, root: Path, bad: list[tuple[str, str]] | tuple, where: Path | None = None) -> str:
    """One line: how many files can't be read and what to do, then the files (relative to ``root``, the folder
    the dataset names) with the reason for each; past ``INLINE`` of them (with a file listing them all) the
    rest are counted."""
    shown = list(bad) if where is None else list(bad[:INLINE])
    noun, them = ("image", "it") if len(bad) == 1 else ("images", "them")
    listed = ", ".join(f"{_relative(p, root)} ({r})" for p, r in shown)
    more = f", and {len(bad) - len(shown)} more" if len(shown) < len(bad) else ""
    kept = f" (all listed in {where})" if where is not None and len(shown) < len(bad) else ""
    return (f"dataset {dataset!r}: {len(bad)} unreadable {noun}{kept}; fix or remove {them}, or pass "
            f"--set data.on_bad_image=skip to train without {them}: {listed}{more}")


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def fail_on(dataset: str, root: Path, bad: list[tuple[str, str]] | tuple, where: Path | None = None) -> None:
    if bad:
        raise DataError(unreadable_message(dataset, root, bad, where))
