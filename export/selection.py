"""Which runs of a grid to export, by the store's one rule for "best"; torch-free (``export.cli`` uses it)."""

from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.store import GridDir, RunRecord, load_run, selection_key

SELECTIONS = ("all", "best-per-dataset", "best-per-dataset-backbone")


class ExportError(UserError):
    """A user error (no checkpoint, unknown selection, export already running); one line."""


def select_runs(records: list[RunRecord], select: str = "all") -> list[RunRecord]:
    """Finished runs with a best checkpoint, in the given order; ``best-per-*`` keeps the best per dataset
    (and backbone) by ``engine.store.selection_key`` (``BEST_RULE``: validation only, never test)."""
    if select not in SELECTIONS:
        raise ExportError(f"selection {select!r} not known; choose from {', '.join(SELECTIONS)}")
    done = [r for r in records if r.summary.status == "done" and r.dir.has_checkpoint()]
    if select == "all":
        return done
    best: dict[tuple, RunRecord] = {}
    for r in sorted(done, key=lambda r: selection_key(r.summary)):
        key = (r.summary.dataset,) if select == "best-per-dataset" else (r.summary.dataset, r.summary.backbone)
        best.setdefault(key, r)
    chosen = {id(r) for r in best.values()}
    return [r for r in done if id(r) in chosen]


def grid_dir_of(grid_dir: str | Path | GridDir) -> GridDir:
    return grid_dir if isinstance(grid_dir, GridDir) else GridDir(grid_dir)


def grid_records(grid_dir: str | Path | GridDir) -> list[RunRecord]:
    """Every run of a grid folder, as the store reads it; ExportError when it isn't a grid."""
    gdir = grid_dir_of(grid_dir)
    if not gdir.exists():
        raise ExportError(f"{gdir.path} is not a grid folder (no {gdir.INFO})")
    return [load_run(rd, gdir.name) for rd in gdir.run_dirs()]
