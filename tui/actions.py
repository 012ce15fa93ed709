"""What the TUI asks of the store: start, resume and cancel grids and runs; export and report grids.

Starting and resuming go through the ``finetune-tui`` command line in a child
process of its own session: the CLI validates the grid (which imports torch,
seconds of work the TUI process should never carry), prepares the folders and
starts the orchestrator detached (``engine.orchestrator.start_detached`` /
``resume_detached``), so the grid outlives the TUI and the SSH connection.
Exporting and reporting run the CLI the same way, as children that outlive the TUI
(:class:`Child`): their output goes to the grid's export and report logs (``GridDir.export_log``,
``report_log``) and the TUI only waits for them to say how it went. Torch never loads in the TUI.
Cancelling only writes a cancel request into the store (``engine.store``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.launcher import project_env
from engine.store import GridDir, RunDir, RunStore, StoreError

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
    for name, entry in PRESETS.items():
        grid = entry.build()
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


def _command(args: list[str]) -> list[str]:
    """The command line of ``finetune-tui ARGS`` run by this Python."""
    return [sys.executable, "-m", "finetune_tui.cli", *args]


def error_line(output: str, returncode: int) -> str:
    """The line of a failed CLI command's output that says why: its last ``finetune-tui:`` or ``error:`` line,
    else its last non-empty line, else the exit code."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln or ln.startswith("finetune-tui:")]
    message = (errors or lines or [f"exit code {returncode}"])[-1]
    return message.replace("finetune-tui: error: ", "").replace("finetune-tui: ", "")


def _cli(args: list[str]) -> str:
    """Run ``finetune-tui ARGS`` in its own session; its stdout, or ActionError with its error line."""
    try:
        proc = subprocess.run(_command(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=START_TIMEOUT, start_new_session=True, env=project_env())
    except subprocess.TimeoutExpired:
        raise ActionError(f"`finetune-tui {' '.join(args)}` did not return in {START_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise ActionError(error_line(proc.stderr, proc.returncode))
    return proc.stdout


@dataclass
class Child:
    """A ``finetune-tui`` command running in its own session (it outlives the TUI), output to ``log``."""

    proc: subprocess.Popen
    log: Path
    success: Callable[[str], str]  # its last output line -> what to tell the user when it succeeded

    def finished(self) -> bool:
        return self.proc.poll() is not None

    def outcome(self) -> str:
        """The success message, or ActionError with the log's error line (call once finished)."""
        try:
            output = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            output = ""
        if self.proc.returncode != 0:
            raise ActionError(error_line(output, self.proc.returncode))
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        return self.success(lines[-1] if lines else "")


def _spawn(args: list[str], log: Path, success: Callable[[str], str]) -> Child:
    """Start ``finetune-tui ARGS`` detached, stdout and stderr (unbuffered, in order) to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(_command(args), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**project_env(), "PYTHONUNBUFFERED": "1"})
    return Child(proc, log, success)


class StoreActions:
    """The actions, bound to one run store (tests substitute a recorder)."""

    def __init__(self, root: Path):
        self.store = RunStore(root)
        self.root = self.store.root

    def _grid(self, grid: str) -> GridDir:
        """The grid's folder (engine.store.GridDir); ActionError for a name that is no grid's."""
        try:
            return self.store.grid(grid)
        except StoreError as exc:
            raise ActionError(str(exc)) from None

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

    def resume_study(self, study: str) -> str:
        """Resume a cancelled or failed study detached (``finetune-tui study resume``): finished cells are kept."""
        _cli(["study", "resume", study, "--runs", str(self.root)])
        return study

    def cancel_run(self, run_dir: Path) -> None:
        RunDir(run_dir).request_cancel("cancelled from the TUI")

    def cancel_grid(self, grid: str) -> None:
        self._grid(grid).request_cancel("grid cancelled from the TUI")

    def export_grid(self, grid: str) -> Child:
        """Export the grid's best model per dataset to ONNX and benchmark it (``finetune-tui export``;
        which run is best is the CLI's choice, on validation only)."""
        gdir = self._grid(grid)
        args = ["export", "--runs", str(self.root), grid, "--select", "best-per-dataset", "--quiet"]
        return _spawn(args, gdir.export_log, lambda _last: f"exports in {gdir.exports_csv}")

    def report_grid(self, grid: str) -> Child:
        """Make the grid's report (``finetune-tui report --quiet`` prints the path of its Markdown index;
        the HTML one lies next to it)."""
        gdir = self._grid(grid)

        def where(last: str) -> str:
            index = Path(last)
            if index.suffix == ".md":
                return f"report in {index.with_suffix('.html')}"
            return f"report in {gdir.report_dir}"

        return _spawn(["report", "--runs", str(self.root), grid, "--quiet"], gdir.report_log, where)
