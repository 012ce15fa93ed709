"""``finetune-tui study``: run, list, show, cancel and resume feature-extractor studies.

Nothing heavy is imported here: torch loads inside ``study run`` only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.store import RunStore, default_root

EXAMPLES = """examples:
  finetune-tui study run --datasets fashion_mnist --extractors efficientnet_lite0,small_cnn,autoencoder
  finetune-tui study run --name fm --extractors grid:fmnist-lite0,small_cnn,autoencoder --detach
  finetune-tui study run --study my_study.toml --tui     start detached and watch it in the TUI
  finetune-tui study show fm                             the table, and the targets against the seed
"""

EXTRACTORS_HELP = ("comma-separated: BACKBONE or BACKBONE@PX (pretrained weights), run:GRID/RUN_ID (a finished "
                   "run's fine-tuned backbone, shown next to the same backbone before it), grid:GRID (every "
                   "finished run of a grid), small_cnn, autoencoder")

# study flag (argparse dest) -> the config key it sets; parsed like any study setting
FLAG_KEYS = {
    "name": "study.name", "datasets": "study.datasets", "extractors": "study.extractors",
    "data_root": "study.data_root", "download": "study.download", "image_size": "study.image_size",
    "batch_size": "study.batch_size", "train_limit": "study.train_limit", "sample": "study.sample",
    "normalize": "study.normalize", "baseline_epochs": "study.baseline_epochs",
    "on_missing_weights": "study.on_missing_weights", "device": "study.device", "threads": "study.threads",
    "seed": "study.seed",
}


def register(subparsers) -> argparse.ArgumentParser:
    from engine.config import CHOICES

    p = subparsers.add_parser(
        "study", help="feature-extractor study: how well backbones' features separate classes",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Score datasets x extractors by how well their frozen features separate the classes: "
                    "silhouette and Davies-Bouldin of the classes, ARI and NMI of k-means, kNN and linear-probe "
                    "accuracy, extraction speed; with PCA and t-SNE figures. A study is a folder of the run store; "
                    "running the same study again resumes it.")
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    r = sub.add_parser("run", help="start (or resume) a study", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=EXAMPLES + "\nEvery key (study.KEY) is in engine/config.py's StudyConfig; "
                                         "`--show-config` prints a study file that --study reads back.")
    r.add_argument("--study", metavar="FILE.toml", help="a TOML file with a [study] table")
    r.add_argument("--name", help="study name (folder in the run store); default: the file's name, else 'study'")
    r.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help="run store (default: runs/)")
    r.add_argument("--datasets", help="comma-separated dataset names (fashion_mnist, mnist, digits, footwear, "
                                      "cifar10, ..., imagefolder:PATH)")
    r.add_argument("--extractors", help=EXTRACTORS_HELP)
    r.add_argument("--data-root", help="where source datasets are looked for (default: data/)")
    r.add_argument("--download", action="store_true", default=None, help="download missing sources")
    r.add_argument("--image-size", type=int, help="input side of pretrained backbones (default 64)")
    r.add_argument("--batch-size", type=int, help="extraction batch (default 128)")
    r.add_argument("--train-limit", type=int, help="training images for probes and baselines (default 10000; 0 = all)")
    r.add_argument("--sample", type=int, help="test images for silhouette and t-SNE (default 2000; 0 = all)")
    r.add_argument("--normalize", choices=list(CHOICES["study.normalize"]()), help="features before scoring")
    r.add_argument("--baseline-epochs", type=int, help="epochs of the small CNN and the autoencoder (default 5)")
    r.add_argument("--on-missing-weights", choices=list(CHOICES["study.on_missing_weights"]()),
                   help="pretrained weights unavailable: skip the extractor (default), random init, or fail")
    r.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    r.add_argument("--threads", type=int, help="CPU threads (default: all)")
    r.add_argument("--seed", type=int)
    r.add_argument("--set", action="append", default=[], metavar="study.KEY=VALUE", help="any study setting")
    r.add_argument("--detach", action="store_true", help="run in the background; survives logout and the TUI")
    r.add_argument("--tui", action="store_true", help="start detached and open the TUI's study view")
    r.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    r.add_argument("--show-config", action="store_true", help="print the resolved study as TOML and exit")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="the store's studies with their status")
    ls.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help="run store (default: runs/)")
    ls.set_defaults(func=cmd_list)

    sh = sub.add_parser("show", help="a study's table, and the targets checked against the seed")
    sh.add_argument("name")
    sh.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help="run store (default: runs/)")
    sh.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sh.set_defaults(func=cmd_show)

    for action, helptext, func in (("cancel", "ask a running study to stop (it stays resumable)", cmd_cancel),
                                   ("resume", "resume a study in the background", cmd_resume)):
        c = sub.add_parser(action, help=helptext)
        c.add_argument("name")
        c.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help="run store (default: runs/)")
        c.set_defaults(func=func)
    return p


def _root(args) -> Path:
    return Path(getattr(args, "runs", None) or default_root())


def resolve_study(args):
    """File, then --set, then the flags: merged once into one StudyConfig (later beats earlier)."""
    from engine.config import StudyConfig, parse_set, read_study_file

    layers = [(read_study_file(args.study), str(args.study))] if args.study else []
    layers.append((parse_set(args.set), "--set"))  # --set first, so explicit flags win over it
    flags = {key: getattr(args, attr) for attr, key in FLAG_KEYS.items() if getattr(args, attr) is not None}
    layers.append((flags, "command line"))
    return StudyConfig.from_layers(*layers)


def cmd_run(args) -> int:
    from engine.study import control

    cfg = resolve_study(args)
    root = _root(args)
    if args.show_config:  # every check `study run` makes; data that isn't there yet is a warning only
        from engine.store import RunStore

        control.validate(cfg, RunStore(root), missing_data=lambda exc: print(
            f"finetune-tui: warning: {str(exc).splitlines()[0]}", file=sys.stderr))
        print(cfg.to_toml(), end="")
        return 0
    if args.detach or args.tui:
        sdir = control.start_detached(cfg, root)
        print(f"study {cfg.name!r} started in the background: {sdir.path}  (log: {sdir.log_file})")
        if args.tui:
            from tui.app import run_app

            return run_app(root, study=cfg.name)
        print(f"watch it with `finetune-tui study show {cfg.name} --runs {root}`, or in the TUI (key f)")
        return 0
    sdir = control.prepare(cfg, root)
    from engine.study.runner import StudyRunner

    echo = ConsoleEcho(plain=args.plain or not sys.stderr.isatty())
    try:
        status = StudyRunner(sdir, echo=echo).run()
    except KeyboardInterrupt:
        print("\ninterrupted: the study stays resumable; run the same command again to resume", file=sys.stderr)
        return 130
    echo.close()
    if status.status == "failed":
        print(f"finetune-tui: error: {status.error}", file=sys.stderr)
        return 2 if not status.error.startswith("internal error") else 1
    print(summary_text(sdir))
    return 0 if status.status == "done" else 1


class ConsoleEcho:
    """Study progress on the console: a line per stage and result; on a terminal, a live step counter."""

    def __init__(self, plain: bool):
        self.plain = plain
        self.t0 = time.monotonic()
        self._last = 0.0
        self._dirty = False

    def __call__(self, line: str, status) -> None:
        stamp = f"[{time.monotonic() - self.t0:7.1f}s] ({status.done}/{status.total})"
        if line:
            self._clear()
            print(f"{stamp} {line}", file=sys.stderr, flush=True)
        elif not self.plain and time.monotonic() - self._last > 0.2 and status.steps:
            self._last = time.monotonic()
            text = f"{stamp} {status.current}: {status.stage} {status.step}/{status.steps}"
            print(f"\r{text[:150]:<150}", end="", file=sys.stderr, flush=True)
            self._dirty = True

    def _clear(self) -> None:
        if self._dirty:
            print("\r" + " " * 150 + "\r", end="", file=sys.stderr, flush=True)
            self._dirty = False

    def close(self) -> None:
        self._clear()


def summary_text(sdir) -> str:
    """The table of scores per dataset, the notes, and the targets, as text."""
    from study import results

    frame = results.table(sdir)
    st = sdir.status()
    lines = [f"study {sdir.name}: {st.status}" + (f" ({st.error})" if st.error else "")
             + (f", {st.stage} {st.current}" if st.status == "running" else "") + f"  ({sdir.path})"]
    for ds in dict.fromkeys(frame["dataset"]) if len(frame) else []:
        rows = frame[(frame["dataset"] == ds) & (frame["status"] == "done")]
        lines.append(f"\n{ds}" + (f" ({int(rows['n_test'].iloc[0])} test images; silhouette on "
                                  f"n = {int(rows['silhouette_n'].iloc[0])}; probes fitted on "
                                  f"{int(rows['probe_train_n'].iloc[0])})" if len(rows) else ""))
        lines.append(f"  {'extractor':<50} {'dim':>5} {'sil':>6} {'DB':>6} {'sil km':>6} {'DB km':>6} {'ARI':>6} "
                     f"{'NMI':>6} {'kNN':>6} {'lin':>6} {'img/s':>6}")
        for _, r in rows.iterrows():
            lines.append(f"  {str(r['extractor'])[:50]:<50} {int(r['dim']):>5} {r['silhouette']:>6.3f} "
                         f"{r['davies_bouldin']:>6.3f} {r['silhouette_kmeans']:>6.3f} {r['davies_bouldin_kmeans']:>6.3f} "
                         f"{r['ari']:>6.3f} {r['nmi']:>6.3f} {r['knn_accuracy']:>6.3f} "
                         f"{r['linear_probe_accuracy']:>6.3f} {r['img_per_s']:>6.0f}")
        skipped = frame[(frame["dataset"] == ds) & (frame["status"] == "skipped")]
        for _, r in skipped.iterrows():  # an extractor that can't be had here is a row that says why
            lines.append(f"  {str(r['extractor'])[:50]:<50} skipped: {r.get('note', '')}")
        if len(rows):
            lines.append("  (sil, DB: of the true classes; sil km, DB km: of the k-means clusters)")
    for note in st.notes:
        lines.append(f"note: {note}")
    for c in results.seed_targets(frame):
        lines.append(f"target (best extractor beats every seed row on full Fashion-MNIST): {c.line}")
    for c in results.finetune_targets(frame):
        lines.append(f"target (fine-tuned beats its pretrained features): {c.line}")
    return "\n".join(lines)


def cmd_list(args) -> int:
    store = RunStore(_root(args))
    names = store.studies()
    if not names:
        print(f"no studies in {store.root}; start one with `finetune-tui study run`")
        return 0
    for name in names:
        sdir = store.study(name)
        st = sdir.status()
        extra = f"{st.stage} {st.current}" if st.status == "running" else (st.error or st.message)
        print(f"{name:<24} {st.status:<10} {st.done}/{st.total} cells  {extra}")
    return 0


def cmd_show(args) -> int:
    from study import results

    sdir = RunStore(_root(args)).find_study(args.name)
    if args.format == "table":
        print(summary_text(sdir))
        return 0
    frame = results.table(sdir)
    if args.format == "json":
        print(json.dumps(json.loads(frame.to_json(orient="records")), indent=1))
    else:
        frame.to_csv(sys.stdout, index=False)
    return 0


def cmd_cancel(args) -> int:
    from engine.study import control

    sdir = control.cancel(_root(args), args.name)
    print(f"asked study {args.name} to stop" + ("" if sdir.running() else " (it is not running)"))
    return 0


def cmd_resume(args) -> int:
    from engine.study import control

    sdir = control.resume_detached(_root(args), args.name)
    print(f"study {args.name!r} resumed in the background: {sdir.path}")
    return 0
