"""``finetune-tui report GRID``: write the grid's report (figures, tables, report.md/.html).

Nothing heavy is imported here: torch and matplotlib load inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import StoreError, UserError
from engine.store import GridDir, RunStore, default_root

PROG = "finetune-tui"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="write every figure and table of a grid into the grid's report folder",
        description="Make the grid's report from the run store: training history, layer norms, confusion "
                    "matrices, top errors, strategy and final comparisons, calibration, Grad-CAM, ONNX latency, "
                    "and report.md / report.html with the conclusions. Works on unfinished grids. Exits 1 when "
                    "a step failed (one line each; the step's earlier file is kept, marked stale).",
    )
    p.add_argument("grid", help="grid name under --runs, or the path of a grid folder")
    # SUPPRESS: without --runs here, the main command's --runs (if any) stays in effect
    p.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR",
                   help=f"run store (default: the main --runs, else {default_root()}/)")
    p.add_argument("--data-root", default="data",
                   help="where source datasets are, for the image figures (default: data)")
    p.add_argument("--out", default=None, help=f"report folder (default: <runs>/<grid>/{GridDir.REPORT})")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the report's path (and failed steps)")
    p.set_defaults(func=handler)
    return p


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def resolve_grid(grid: str, root: str | Path) -> GridDir:
    """A grid by name in the run store (``RunStore.find_grid``), else the path of a grid folder;
    StoreError (the store's message, listing its grids) when neither exists."""
    as_path = GridDir(Path(grid))
    if "/" in grid:
        if not as_path.path.is_dir():
            raise StoreError(f"grid folder {grid} not found")
        return as_path
    try:
        return RunStore(root).find_grid(grid)
    except UserError:
        if as_path.exists():  # a grid folder in the current directory
            return as_path
        raise


def handler(args: argparse.Namespace) -> int:
    """``finetune-tui report``: 0 done, 1 some step failed (one line each on stderr), 2 user error."""
    try:
        gdir = resolve_grid(args.grid, getattr(args, "runs", None) or default_root())
    except UserError as exc:
        return _error(str(exc))

    from report.api import build_report

    def progress(done: int, total: int, message: str) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\r[{done}/{total}] {message:<50.50}", end="", file=sys.stderr, flush=True)

    try:
        report = build_report(gdir, data_root=args.data_root, out_dir=args.out, progress=progress)
    except UserError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"can't write the report: {exc.strerror or exc} ({exc.filename or ''})")
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    from report.index import MARKDOWN

    index = report.out / MARKDOWN
    if args.quiet:
        print(index)
    else:
        figures = sum(a.kind == "figure" for a in report.artifacts if not a.stale)
        tables = sum(a.kind == "table" for a in report.artifacts if not a.stale)
        print(f"report: {index} (+ report.html), {figures} figures, {tables} tables, {report.seconds:.1f} s")
        if report.gaps:
            print(f"{len(report.gaps)} gap(s), listed in the report:")
            for gap in report.gaps[:10]:
                print(f"  - {gap}")
            if len(report.gaps) > 10:
                print(f"  ... and {len(report.gaps) - 10} more")
    for failure in report.failures:
        print(f"{PROG}: report step failed: {failure.line()}", file=sys.stderr)
    return 1 if report.failures else 0
