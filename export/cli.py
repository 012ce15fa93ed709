"""``finetune-tui export`` and ``finetune-tui predict``.

``register`` and the predict handler import no torch; the export handler
imports ``export.api`` (and so torch) only when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from engine.errors import UserError
from engine.store import BEST_RULE, ExportDir, GridDir, RunDir, RunStore, default_root
from export import predict
from export.selection import SELECTIONS, grid_records, select_runs


def register(subparsers) -> None:
    """Add ``export`` and ``predict`` to the main parser's sub-commands."""
    p = subparsers.add_parser(
        "export", help="export best checkpoints to ONNX, check parity, measure accuracy and latency",
        description=f"Export a run, a grid, or the best run per dataset (and backbone) to ONNX "
                    f"(<run>/export/{ExportDir.MODEL}), check it against PyTorch on the test set, evaluate it, "
                    f"optionally make int8/fp16 variants, and benchmark it with onnxruntime next to PyTorch. "
                    f"Grids also get <grid>/{GridDir.EXPORTS}. A re-export replaces the previous one only "
                    f"when it succeeds.")
    p.add_argument("target", help="a grid name (under --runs), a grid folder, a run folder, or GRID/RUN_ID")
    # dest differs from the main parser's --runs so a sub-command default can't overwrite it
    p.add_argument("--runs", dest="export_runs", default=None, metavar="DIR",
                   help="run store (default: the main --runs, else FINETUNE_TUI_RUNS, the settings file's `runs`, "
                        "else ./runs)")
    p.add_argument("--select", default="all", choices=SELECTIONS,
                   help=f"which finished runs of a grid to export (default all); {BEST_RULE}")
    p.add_argument("--variants", default="", help="comma list of smaller models to add: int8, fp16")
    p.add_argument("--batches", default="1,8,32", help="benchmark batch sizes (default 1,8,32)")
    p.add_argument("--providers", default="", help="onnxruntime providers to benchmark: cpu,cuda,trt "
                                                   "(default: every one this onnxruntime offers)")
    p.add_argument("--no-bench", action="store_true", help="skip the latency benchmark")
    p.add_argument("--quick-bench", action="store_true", help="a few timed runs only (smoke test, not figures)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for onnxruntime and PyTorch "
                                                             "(default: all this process may use)")
    p.add_argument("--atol", type=float, default=1e-3, help="parity tolerance on logits (default 1e-3)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the test set is evaluated (default auto)")
    p.add_argument("--embed-preprocess", action=argparse.BooleanOptionalAction, default=True,
                   help=f"also write <run>/export/{ExportDir.EMBEDDED}: uint8 images of any size in, resize, "
                        f"normalisation (and an image folder's centre crop) and softmax in the graph, "
                        f"probabilities and the class index out (default: on)")
    p.add_argument("--json", action="store_true",
                   help="print the export summaries and latency rows as one JSON object instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run_export)

    q = subparsers.add_parser(
        "predict", help="classify images with an exported model (onnxruntime, numpy and Pillow only)",
        description=f"Classify images with an exported {ExportDir.MODEL} alone: preprocessing comes from the file's "
                    "metadata; no torch is imported.")
    predict.add_arguments(q)
    q.set_defaults(func=predict.run)


def _error(msg: str) -> int:
    print(f"finetune-tui: error: {msg}", file=sys.stderr)
    return 2


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run_export(args: argparse.Namespace) -> int:
    """Handler for ``finetune-tui export``: 0 all ok, 1 some export failed, 2 user error."""
    store = RunStore(args.export_runs or getattr(args, "runs", None) or default_root())
    if not (math.isfinite(args.atol) and args.atol > 0):  # a negative or nan tolerance fails every parity check
        return _error(f"--atol must be a positive number (the default is 1e-3), got {args.atol}")
    try:
        target = store.locate(args.target)
        batches = [int(b) for b in _split(args.batches)]
    except UserError as exc:
        return _error(str(exc))
    except ValueError:
        return _error(f"--batches expects integers like 1,8,32, got {args.batches!r}")
    if args.threads is not None and args.threads < 1:
        return _error(f"--threads must be at least 1, got {args.threads}")

    import pandas as pd

    from engine.store import load_run
    from export import api  # torch comes in here, only for this command
    from export.benchmark import QUICK, BenchConfig

    def progress(p: api.ExportProgress) -> None:
        if args.quiet:
            return
        count = f" {p.done}/{p.total}" if p.total else ""
        if p.total and 0 < p.done < p.total:
            return  # the TUI shows a bar; a terminal gets each stage's start and end
        print(f"[export] {p.run_id}: {p.stage}{count}", file=sys.stderr, flush=True)

    kwargs = dict(benchmark=not args.no_bench, batches=batches, variants=_split(args.variants),
                  providers=_split(args.providers) or None, device=args.device, atol=args.atol,
                  threads=args.threads, bench_config=QUICK if args.quick_bench else BenchConfig(),
                  progress=progress, embed_preprocess=args.embed_preprocess)
    try:
        if isinstance(target, RunDir):
            gdir = GridDir(target.path.parent)
            summaries = [{"run_id": target.run_id, **api.export_run(target, **kwargs)}]
            if gdir.exists():
                api.write_grid_csv(gdir)
            table = api.grid_table(gdir) if gdir.exists() else pd.DataFrame([api.run_row(load_run(target))])
        else:
            gdir = target
            if args.select != "all":
                chosen = select_runs(grid_records(gdir), args.select)
                print(f"{args.select}: {', '.join(r.run_id for r in chosen) or 'no finished run'} "
                      f"({BEST_RULE})", file=sys.stderr if args.json else sys.stdout)
            summaries = api.export_grid(gdir, select=args.select, **kwargs)
            table = api.grid_table(gdir)
    except UserError as exc:
        return _error(str(exc))
    exported = [s["run_id"] for s in summaries]
    bad = [s for s in summaries if s["status"] != "ok"]
    for s in bad:
        print(f"finetune-tui: export {s['status']}: {s['run_id']}: {s['error']}", file=sys.stderr)
    if args.json:
        latency = [row for s in summaries for row in api.latency_rows(gdir.run(s["run_id"]))]
        json.dump({"exports": summaries, "latency": latency,
                   "exports_csv": str(gdir.exports_csv) if gdir.exports_csv.is_file() else None},
                  sys.stdout, indent=1, allow_nan=False)
        print()
        return 1 if bad else 0
    if table is not None and not table.empty:
        print(format_accuracy(table[table["run_id"].isin(exported)]))
    latency = [row for s in summaries for row in api.latency_rows(gdir.run(s["run_id"]))]
    if latency:
        print()
        print(format_latency(latency))
    if gdir.exports_csv.is_file():
        print(f"\nwritten: {gdir.exports_csv}")
    return 1 if bad else 0


def _fmt(v) -> str:
    return f"{v:.4g}"


def format_accuracy(df) -> str:
    """Per run: accuracy and F1 both ways, parity, size, and what the variants cost."""
    keep = ["run_id", "status", "torch_accuracy", "onnx_accuracy", "torch_f1_macro", "onnx_f1_macro",
            "parity_max_abs_diff", "top1_agreement", "size_mb"]
    keep += [c for c in df.columns if c.endswith(("_size_mb", "_accuracy_delta")) and c != "size_mb"]
    keep += ["embedded_accuracy", "embedded_top1_agreement_trainer"]
    keep += [c for c in df.columns if c.startswith("pareto_")]
    shown = df[[c for c in keep if c in df.columns]].rename(
        columns=lambda c: _SHORT_COLUMNS.get(c, c.replace("_accuracy", "_acc")))
    return shown.to_string(index=False, float_format=_fmt)


# the printed table's headers; the CSV and --json keep the full names
_SHORT_COLUMNS = {"embedded_accuracy": "pre_acc", "embedded_top1_agreement_trainer": "pre_vs_trainer",
                  "embedded_size_mb": "pre_size_mb", "torch_accuracy": "torch_acc", "onnx_accuracy": "onnx_acc",
                  "int8_accuracy_delta": "int8_acc_delta", "fp16_accuracy_delta": "fp16_acc_delta"}


def format_latency(rows: list[dict]) -> str:
    """Per run, engine and batch: p50/p90/p99 ms, images/s and ONNX/PyTorch images/s."""
    import pandas as pd

    df = pd.DataFrame(rows).drop(columns=["runs"])
    return df.to_string(index=False, float_format=_fmt, na_rep="")
