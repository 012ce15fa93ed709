"""Control requests through the store, so any process (a TUI, another host) can ask.

A ``cancel`` file in a run folder asks its worker to stop at the next step; in
a grid folder it asks the orchestrator to stop launching and cancel all runs.
"""

from __future__ import annotations

from pathlib import Path

from engine.store import atomic_write_text


def cancel_run(run_dir: str | Path, reason: str = "cancelled by user") -> None:
    atomic_write_text(Path(run_dir) / "cancel", reason + "\n")


def cancel_grid(grid_dir: str | Path, reason: str = "grid cancelled by user") -> None:
    atomic_write_text(Path(grid_dir) / "cancel", reason + "\n")


def cancel_requested(folder: str | Path) -> str | None:
    """The cancel reason if one was requested for this folder, else None."""
    path = Path(folder) / "cancel"
    try:
        return path.read_text(encoding="utf-8").strip() or "cancelled"
    except FileNotFoundError:
        return None


def clear_cancel(folder: str | Path) -> None:
    (Path(folder) / "cancel").unlink(missing_ok=True)
