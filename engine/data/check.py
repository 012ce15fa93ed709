"""The grid's data pre-flight: every dataset of a grid checked once, with the settings its runs use."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from engine.store import DatasetCacheDir, RunStore

from .errors import DataError, UnknownDatasetError
from .load import check_dataset
from .scan import INLINE

if TYPE_CHECKING:
    from engine.config import GridConfig

log = logging.getLogger(__name__)


def grid_cache(grid: GridConfig, root: str | Path | None) -> DatasetCacheDir | None:
    """The dataset cache the grid's runs will use (its scans are kept there), None when nothing says where."""
    if grid.base.data.cache_dir:
        return DatasetCacheDir(Path(grid.base.data.cache_dir).expanduser())
    return RunStore(root).dataset_cache if root is not None else None


def check_or_hand_on(name: str, data_root: str | Path, *, download: bool, cache: DatasetCacheDir | None,
                     on_bad_image: str = "fail", missing_data: Callable[[DataError], None] | None = None
                     ) -> list[tuple[str, str]]:
    """check_dataset; with ``missing_data`` nothing is downloaded and data that can't be had is handed to it
    (returning no unreadable images) instead of raised. An unknown dataset name always raises."""
    try:
        return check_dataset(name, data_root, download=download and missing_data is None, cache=cache,
                             on_bad_image=on_bad_image)
    except UnknownDatasetError:
        raise
    except DataError as exc:
        if missing_data is None:
            raise
        missing_data(exc)
        return []


def check_grid_data(grid: GridConfig, root: str | Path | None = None,
                    missing_data: Callable[[DataError], None] | None = None) -> dict[str, list[tuple[str, str]]]:
    """check_dataset for each dataset of the grid (its first run's data settings: overrides count), raising on
    the first one that can't be had; returns the unreadable images of those set to skip them, and logs them.

    With ``missing_data`` nothing is downloaded and a source that can't be had is handed to it instead of
    raised (an unknown dataset name still raises)."""
    cache = grid_cache(grid, root)
    seen: dict[str, list[tuple[str, str]]] = {}
    for run in grid.runs():
        d = run.data
        if d.dataset in seen:
            continue
        seen[d.dataset] = bad = check_or_hand_on(d.dataset, d.data_root, download=d.download,
                                                 cache=cache if d.cache else None, on_bad_image=d.on_bad_image,
                                                 missing_data=missing_data)
        if bad:
            shown = ", ".join(p for p, _ in bad[:INLINE]) + (f", and {len(bad) - INLINE} more" if len(bad) > INLINE
                                                             else "")
            log.warning("dataset %r: %d unreadable image(s) will be skipped (data.on_bad_image = \"skip\"): %s",
                        d.dataset, len(bad), shown)
    return {k: v for k, v in seen.items() if v}
