"""``finetune-tui sync tensorboard|mlflow [GRID]``: replay the run store into an experiment tracker.

``register`` imports neither tracker; a handler imports its tracker's package when it runs, and
says which ``pip install`` brings it when it is missing (one line, exit 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from engine.errors import UserError
from engine.store import RunStore, default_root

EXTRA = "pip install 'finetune-tui[sync]'"  # pyproject.toml's optional dependencies


class SyncError(UserError):
    """A tracker package is missing, or its destination refuses the data."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sync", help="replay the run store into TensorBoard or MLflow (only what is new)",
        description="Send every run of a grid (or of every grid) to an experiment tracker: per-epoch "
                    "losses, accuracies, per-layer learning rates and weight norms; the config as parameters; "
                    "test results and export figures as metrics; report figures and ONNX files as artifacts "
                    "(MLflow) or images (TensorBoard). Running it again sends only what is new.")
    trackers = p.add_subparsers(dest="tracker", metavar="TRACKER", required=True)
    tb = trackers.add_parser("tensorboard", help="write TensorBoard event files",
                             description="Write TensorBoard event files to LOGDIR/<grid>/<run>/ "
                                         "(view with `tensorboard --logdir LOGDIR`).")
    ml = trackers.add_parser("mlflow", help="log to an MLflow tracking store",
                             description="Log to an MLflow tracking store: one experiment per grid, a parent run "
                                         "for the grid and a nested run per training run.")
    for q in (tb, ml):
        q.add_argument("grid", nargs="?", help="a grid name (default: every grid of the store)")
        q.add_argument("--runs", dest="sync_runs", default=None, metavar="DIR",
                       help="run store (default: the main --runs, else FINETUNE_TUI_RUNS, the settings file or runs/)")
    tb.add_argument("--logdir", metavar="DIR", help=f"TensorBoard log folder (default: <store>/{RunStore.TENSORBOARD})")
    ml.add_argument("--tracking-uri", metavar="URI",
                    help=f"any MLflow tracking URI (default: MLFLOW_TRACKING_URI, else a SQLite file "
                         f"<store>/{RunStore.MLFLOW}/{RunStore.MLFLOW_DB}, artifacts beside it)")
    ml.add_argument("--experiment", metavar="NAME", help="one MLflow experiment for every grid (default: the grid's name)")
    tb.set_defaults(func=run_sync)
    ml.set_defaults(func=run_sync)


def require(module: str, tracker: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SyncError(f"`sync {tracker}` needs the {module} package, which is not installed; run: {EXTRA}")


def run_sync(args: argparse.Namespace) -> int:
    import os

    store = RunStore(args.sync_runs or getattr(args, "runs", None) or default_root())
    grids = [store.find_grid(args.grid)] if args.grid else [store.grid(g) for g in store.grids()]
    if not grids:
        raise SyncError(f"no grids in {store.root}; start one with `finetune-tui run --preset demo`")
    if args.tracker == "tensorboard":
        require("tensorboard", "tensorboard")
        from sync import tensorboard

        logdir = Path(args.logdir) if args.logdir else store.tensorboard_dir

        def send(gdir):
            return tensorboard.sync_grid(gdir, logdir)

        where = f"{logdir}  (view: tensorboard --logdir {logdir})"
    else:
        require("mlflow", "mlflow")
        from sync import mlflow_sync

        default = mlflow_sync.default_uri(store)
        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default
        if uri == default:
            store.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
        try:
            target = mlflow_sync.MlflowTarget(uri, args.experiment,
                                              store.mlflow_artifacts if uri == default else None)
        except Exception as exc:  # a URI MLflow can't open: say so in one line
            raise SyncError(f"MLflow can't open tracking URI {uri!r}: {_first_line(exc)}") from None

        def send(gdir):
            return mlflow_sync.sync_grid(gdir, target)

        ui = f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite:") else "the MLflow UI"
        where = f"{uri}  (view: {ui})"
    failed = False
    for gdir in grids:
        try:
            counts = send(gdir)
        except UserError:
            raise
        except Exception as exc:  # the tracker refused something: name it, go on with the next grid
            print(f"finetune-tui: error: sync {args.tracker} {gdir.name}: {type(exc).__name__}: {_first_line(exc)}",
                  file=sys.stderr)
            failed = True
            continue
        print(f"{args.tracker} {gdir.name}: {counts.describe()}")
        for line in counts.skipped:
            print(f"  skipped {line}", file=sys.stderr)
    print(f"-> {where}")
    return 1 if failed else 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
