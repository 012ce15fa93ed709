"""``finetune-tui report GRID``: write the grid's report (figures, tables, report.md/.html).

Nothing heavy is imported here: torch and matplotlib load inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "finetune-tui"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="write every figure and table of a grid into <runs>/<grid>/report/",
        description="Make the grid's report from the run store: training history, layer norms, confusion "
                    "matrices, top errors, strategy and final comparisons, calibration, Grad-CAM, ONNX latency, "
                    "and report.md / report.html with the conclusions. Works on unfinished grids.",
    )
    p.add_argument("grid", help="grid name under --runs, or the path of a grid folder")
    # SUPPRESS: without --runs here, the main command's --runs (if any) stays in effect
    p.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR",
                   help="run store (default: the main --runs, else runs/)")
    p.add_argument("--data-root", default="data",
                   help="where source datasets are, for the image figures (default: data)")
    p.add_argument("--out", default=None, help="report folder (default: <runs>/<grid>/report)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the report's path")
    p.set_defaults(func=handler)
    return p


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def resolve_grid(grid: str, root: str) -> Path | None:
    """A grid name under ``root``, else a path to a grid folder; None when neither exists."""
    by_name = Path(root) / grid
    if "/" not in grid and by_name.is_dir():
        return by_name
    as_path = Path(grid)
    return as_path if as_path.is_dir() else (by_name if by_name.is_dir() else None)


def handler(args: argparse.Namespace) -> int:
    runs = getattr(args, "runs", None) or "runs"
    grid_dir = resolve_grid(args.grid, runs)
    if grid_dir is None:
        root = Path(runs)
        known = sorted(p.name for p in root.iterdir() if (p / "grid.json").exists()) if root.is_dir() else []
        hint = f"; grids in {root}: {', '.join(known)}" if known else f"; no grids in {root}"
        return _error(f"grid {args.grid!r} not found{hint}")

    from report.api import ReportError, build_report

    def progress(done: int, total: int, message: str) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\r[{done}/{total}] {message:<50.50}", end="", file=sys.stderr, flush=True)

    try:
        report = build_report(grid_dir, data_root=args.data_root, out_dir=args.out, progress=progress)
    except ReportError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"can't write the report: {exc.strerror or exc} ({exc.filename or ''})")
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    index = report.out / "report.md"
    if args.quiet:
        print(index)
        return 0
    figures = sum(a.kind == "figure" for a in report.artifacts)
    tables = sum(a.kind == "table" for a in report.artifacts)
    print(f"report: {index} (+ report.html), {figures} figures, {tables} tables, {report.seconds:.1f} s")
    if report.gaps:
        print(f"{len(report.gaps)} gap(s), listed in the report:")
        for gap in report.gaps[:10]:
            print(f"  - {gap}")
        if len(report.gaps) > 10:
            print(f"  ... and {len(report.gaps) - 10} more")
    return 0
