"""What the TUI asks of the store: start, resume and cancel grids and runs.

Starting and resuming go through the ``finetune-tui`` command line in a child
process of its own session: the CLI validates the grid (which imports torch,
seconds of work the TUI process should never carry), prepares the folders and
starts the orchestrator detached (``engine.orchestrator.start_detached`` /
``resume_detached``), so the grid outlives the TUI and the SSH connection.
Cancelling only writes a file (``engine.control``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.control import cancel_grid, cancel_run

START_TIMEOUT = 120.0  # validating a grid imports torch; the orchestrator then starts in the background


class ActionError(Exception):
    """A store action failed; the message is one line for the user."""


@dataclass(frozen=True)
class PresetInfo:
    """A built-in grid as the start screen lists it."""

    name: str
    runs: int
    description: str


def presets() -> list[PresetInfo]:
    """The built-in grids (``engine.presets.PRESETS``), described in one line each."""
    from engine.presets import PRESETS  # engine.config only: no torch

    out = []
    for name, grid in PRESETS.items():
        n = len(grid.datasets) * len(grid.backbones) * len(grid.strategies)
        desc = (f"{', '.join(grid.datasets)} × {', '.join(grid.backbones)} × {', '.join(grid.strategies)}; "
                f"{grid.base.train.epochs} epochs at {grid.base.data.image_size}px")
        out.append(PresetInfo(name, n, desc))
    return sorted(out, key=lambda p: p.runs)  # the quick demo first


def check_grid_file(path: str) -> str:
    """Read a TOML grid file; its grid name, or ActionError with the reason."""
    from engine.config import ConfigError, load_grid_file

    try:
        return load_grid_file(Path(path).expanduser()).name
    except ConfigError as exc:
        raise ActionError(str(exc).splitlines()[0]) from None


def check_name(name: str) -> None:
    from engine.config import ConfigError, check_grid_name

    try:
        check_grid_name(name)
    except ConfigError as exc:
        raise ActionError(str(exc)) from None


def free_name(root: Path, name: str) -> str:
    """``name`` if no grid of that name exists in ``root``, else ``name-2``, ``name-3``, ..."""
    if not (root / name).exists():
        return name
    base = re.sub(r"-\d+$", "", name)
    i = 2
    while (root / f"{base}-{i}").exists():
        i += 1
    return f"{base}-{i}"


def _cli(args: list[str]) -> str:
    """Run ``finetune-tui ARGS`` in its own session; its stdout, or ActionError with its error line."""
    cmd = [sys.executable, "-m", "finetune_tui.cli", *args]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=START_TIMEOUT, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise ActionError(f"`finetune-tui {' '.join(args)}` did not return in {START_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error:" in ln]
        message = (errors or lines or [f"exit code {proc.returncode}"])[-1]
        raise ActionError(message.replace("finetune-tui: error: ", ""))
    return proc.stdout


class StoreActions:
    """The actions, bound to one run store (tests substitute a recorder)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def start_grid(self, preset: str = "", file: str = "", name: str = "") -> str:
        """Start a grid detached; returns its name."""
        args = ["run", "--runs", str(self.root), "--detach"]
        args += ["--grid", str(Path(file).expanduser())] if file else ["--preset", preset or "demo"]
        if name:
            check_name(name)
            args += ["--name", name]
        _cli(args)
        return name or (check_grid_file(file) if file else preset or "demo")

    def resume_grid(self, grid: str) -> str:
        _cli(["resume", grid, "--runs", str(self.root)])
        return grid

    def cancel_run(self, run_dir: Path) -> None:
        cancel_run(run_dir, "cancelled from the TUI")

    def cancel_grid(self, grid: str) -> None:
        cancel_grid(self.root / grid, "grid cancelled from the TUI")
