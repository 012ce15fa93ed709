"""The `finetune-tui` command. Nothing heavy is imported at module level (`predict` must not load torch)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import sys
from pathlib import Path

from finetune_tui import __version__

CONFIG_DOC = "docs/CONFIG.md"
RUNS_HELP = "run store (default: FINETUNE_TUI_RUNS, else the settings file's `runs`, else ./runs)"

EPILOG = """examples:
  finetune-tui                                  open the TUI on the run store (./runs by default)
  finetune-tui run --preset demo                offline demo grid (a few minutes on CPU)
  finetune-tui run --preset seed --data-root ~/data --image-size 96 --detach
  finetune-tui run --grid my_grid.toml --tui    start detached and watch it in the TUI
  finetune-tui runs                             list runs with status and metrics
  finetune-tui lr-find --preset recommended     LR range test: the learning rate to train at
  finetune-tui sync tensorboard                 replay the store into TensorBoard (or: sync mlflow)
  eval "$(finetune-tui completion bash)"        tab completion in this shell (bash, zsh or tcsh)

exit status: 0 success; 1 a run, export or report failed (or an internal error: a traceback
file is named); 2 a usage or user error (one line on stderr); 130 interrupted.
settings: FINETUNE_TUI_RUNS names the run store; `finetune-tui settings` shows the settings file
(default store, TUI theme, key bindings) and what is in force.
"""


def fail(message: str) -> int:
    print(f"finetune-tui: error: {message}", file=sys.stderr)
    return 2


DEFAULT_PRESET = "demo"


def add_run_parser(sub) -> None:
    # registries and config are torch-free: their names give the choices and help below
    from engine.heads import HEADS
    from engine.presets import PRESETS
    from engine.strategies import STRATEGIES

    def listing(title: str, registry) -> str:
        return f"{title}:\n" + "\n".join(f"  {name:<16}{entry.description}" for name, entry in registry.items())

    p = sub.add_parser("run", help="train a grid (preset or TOML file)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train every dataset x backbone x strategy of a grid, one subprocess per run. "
                                   "Running the same grid again resumes it: finished runs are skipped, unfinished "
                                   "ones restart from their last checkpoint.",
                       epilog="\n\n".join([
                           listing("presets", PRESETS), listing("strategies", STRATEGIES), listing("heads", HEADS),
                           "Any setting can be given with --set section.key=value (sections: data, model, train).\n"
                           "Command line beats the grid file, its [overrides.NAME] included. `--show-config` prints\n"
                           "the resolved grid as a TOML file that --grid reads back. Every key, its type, default\n"
                           f"and allowed values: {CONFIG_DOC} (generated from engine/config.py).",
                       ]))
    add_grid_flags(p)
    p.add_argument("--detach", action="store_true", help="start in the background and return; survives logout")
    p.add_argument("--tui", action="store_true", help="start detached and open the TUI on the grid")
    p.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    p.add_argument("--show-config", action="store_true",
                   help="print the resolved grid as TOML (a file --grid reads back) and exit")
    p.set_defaults(func=cmd_run)


def add_grid_flags(p) -> None:
    """The flags that choose and change a grid (``run`` and ``lr-find`` share them)."""
    from engine.config import CHOICES
    from engine.heads import HEADS
    from engine.presets import PRESETS
    from engine.strategies import STRATEGIES

    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=list(PRESETS), help=f"a built-in grid (default: {DEFAULT_PRESET})")
    src.add_argument("--grid", metavar="FILE.toml", help="a TOML grid file")
    p.add_argument("--name", help="grid name (folder in the run store); default: the preset's or the file's name")
    p.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help=RUNS_HELP)
    p.add_argument("--datasets", help="comma-separated dataset names (transport, animals, footwear, people, cifar10, "
                                      "cifar100, fashion_mnist, mnist, digits, imagefolder:PATH)")
    p.add_argument("--backbones", help="comma-separated: vgg16, resnet50, mobilenetv2, efficientnetb0, "
                                       "efficientnet_lite0 or any timm model name")
    p.add_argument("--strategies", help=f"comma-separated: {', '.join(STRATEGIES)}")
    p.add_argument("--data-root", help="where source datasets are looked for (default: data/)")
    p.add_argument("--download", action="store_true", default=None, help="download missing sources via torchvision")
    p.add_argument("--image-size", type=int, help="input side in pixels (seed: 32; pretrained nets like 96-224)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--lr", type=float, help="learning rate (default: the strategy's own)")
    p.add_argument("--head", choices=list(HEADS), help=f"classifier head: {', '.join(HEADS)}")
    p.add_argument("--weights", help="'pretrained' (default), 'random', or a .safetensors/.pth file")
    p.add_argument("--on-missing-weights", choices=list(CHOICES["model.on_missing_weights"]()),
                   help="when pretrained weights can't be had: fail (default) or train from random init")
    p.add_argument("--augment", action="store_true", default=None, help="random crop, flip, colour jitter")
    p.add_argument("--class-weighting", action="store_true", default=None, help="inverse-frequency loss weights")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--concurrency", type=int, help="runs at once (default: one per GPU, 1 on CPU; on a Ray "
                                                   "cluster as many as it holds)")
    p.add_argument("--executor", choices=["local", "ray"], help="where runs train: local (default) or ray, the nodes "
                                                               "of a Ray cluster (pip install finetune-tui[ray])")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="the Ray cluster to run on (default: the one this machine joined, else a new local one)")
    p.add_argument("--ray-store", choices=["shared", "ship"],
                   help="shared (default: the store on a filesystem every node mounts at one path) or ship (each "
                        "node trains in a scratch folder, its events and files shipped to this machine's store)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set train.patience=3 --set data.val_fraction=0.2")
    p.add_argument("--axis", action="append", default=[], metavar="KEY=V1,V2",
                   help="vary a setting across runs, e.g. --axis train.lr=1e-3,3e-4 (like [axes] in a grid file)")


# run flag (argparse dest) -> the config key it sets; parsed like any other setting
FLAG_KEYS = {
    "name": "name", "datasets": "datasets", "backbones": "backbones", "strategies": "strategies",
    "concurrency": "concurrency", "executor": "executor", "ray_address": "ray_address",
    "ray_store": "ray_store",
    "data_root": "data.data_root", "download": "data.download", "image_size": "data.image_size",
    "batch_size": "data.batch_size", "augment": "data.augment", "epochs": "train.epochs", "lr": "train.lr",
    "head": "model.head", "weights": "model.weights", "on_missing_weights": "model.on_missing_weights",
    "class_weighting": "train.class_weighting", "device": "train.device",
}


def resolve_grid(args):
    """Preset or file, then --set, then the flags: merged once into one GridConfig (later beats earlier)."""
    from engine.config import GridConfig, parse_set, read_grid_file
    from engine.presets import get_preset

    layers = [(read_grid_file(args.grid), str(args.grid))] if args.grid else []
    start = None if args.grid else get_preset(args.preset or DEFAULT_PRESET)
    if getattr(args, "axis", None):
        axes = parse_set(args.axis, "--axis", "train.lr=1e-3,3e-4")
        layers.append(({"axes": {k: v.split(",") for k, v in axes.items()}}, "--axis"))
    # after the axes: a command-line setting of an axis's key beats the axis (README), --set as much as --lr;
    # before the flags, so explicit flags win over it
    layers.append((parse_set(args.set), "--set"))
    flags = {key: getattr(args, attr) for attr, key in FLAG_KEYS.items() if getattr(args, attr) is not None}
    layers.append((flags, "command line"))
    unused: list[str] = []
    grid = GridConfig.from_layers(*layers, start=start, unused=unused)
    for line in unused:  # e.g. a file's [overrides.full] in a grid of frozen runs only: said, not silently dropped
        print(f"finetune-tui: warning: {line}", file=sys.stderr)
    return grid


def cmd_run(args) -> int:
    from engine import orchestrator as orch
    from engine.console import ProgressView
    from engine.store import RunStore

    grid = resolve_grid(args)
    if args.show_config:  # every check `run` makes; data that isn't there yet is a warning only
        def warn(exc):
            print(f"finetune-tui: warning: {str(exc).splitlines()[0]}", file=sys.stderr)

        orch.validate(grid, args.runs, missing_data=warn)
        print(grid.to_toml(), end="")
        return 0
    if args.detach or args.tui:
        gdir = orch.start_detached(grid, args.runs)
        print(f"grid {grid.name!r} started in the background: {gdir}  (log: {gdir / 'orchestrator.log'})")
        if args.tui:
            from tui.app import run_app

            return run_app(Path(args.runs), grid.name)
        print(f"watch it with `finetune-tui --runs {args.runs}` or `finetune-tui runs --grid {grid.name}`")
        return 0
    gdir = orch.prepare(grid, args.runs)
    summaries = {rec.run_id: rec.summary for rec in RunStore(args.runs).runs(grid.name)}
    view = ProgressView(summaries, plain=True if args.plain else None)
    try:
        with view, interrupt_on_termination():
            counts = orch.Orchestrator(gdir, on_event=view).run()
    except KeyboardInterrupt:
        print("\ninterrupted: unfinished runs stay resumable; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"grid {grid.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"  ({gdir})")
    return 0 if set(counts) <= {"done"} else 1


@contextlib.contextmanager
def interrupt_on_termination():
    """SIGTERM and SIGHUP (a closed SSH session) stop a foreground grid as Ctrl-C does: its workers are asked to
    stop and the runs stay resumable, instead of the process dying and leaving workers behind. Ctrl-C counts even
    where the shell started us with SIGINT ignored (a background job of a script); a SIGHUP ignored on purpose
    (nohup) stays ignored."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    wanted = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        wanted.append(signal.SIGHUP)
    previous = {sig: signal.signal(sig, interrupt) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_lr_find_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="LR range test of one run of a grid: loss against learning rate, and the "
                                       "LR it suggests", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train one run of a grid for a few batches with an exponentially growing learning "
                                   "rate (fastai's lr_find) and suggest the LR to train it at (the middle of the "
                                   "longest fall of the smoothed loss). Nothing is written to the run store; "
                                   "`--set train.lr=find` makes a run do the same before it trains.",
                       epilog="example:\n  finetune-tui lr-find --preset recommended --out lr.png")
    add_grid_flags(p)
    p.add_argument("--run", metavar="RUN_ID", help="which run of the grid (needed when it has more than one)")
    p.add_argument("--stage", type=int, help="stage to test (default: the strategy's first, after any head warm-up)")
    p.add_argument("--steps", type=int, help="batches to take (default: train.lr_find_steps, 100)")
    p.add_argument("--out", metavar="FILE.png", help="also draw the curve to this PNG")
    p.set_defaults(func=cmd_lr_find)


def cmd_lr_find(args) -> int:
    from engine.errors import UserError
    from engine.lr_find import run_range_test
    from engine.strategies import n_stages

    grid = resolve_grid(args)
    runs = grid.runs()
    if args.run:
        chosen = [r for r in runs if r.run_id == args.run]
        if not chosen:
            raise UserError(f"no run {args.run!r} in the grid; its runs: {', '.join(r.run_id for r in runs)}")
    elif len(runs) == 1:
        chosen = runs
    else:
        raise UserError(f"the grid has {len(runs)} runs; pick one with --run (e.g. --run {runs[0].run_id})")
    if args.out and Path(args.out).is_dir():  # found only after the whole test, naming a temp file
        raise UserError(f"--out {args.out} is a folder; give the PNG's file name, e.g. {Path(args.out) / 'lr.png'}")
    if args.steps is not None and args.steps < 10:  # 0 fell back to the default, below 10 made no curve
        raise UserError(f"--steps {args.steps}: at least 10 (the default is train.lr_find_steps, 100)")
    stages = n_stages(chosen[0].train)
    if args.stage is not None and not 0 <= args.stage < stages:
        raise UserError(f"--stage {args.stage}: {chosen[0].run_id} ({chosen[0].train.strategy}) has stages "
                        f"0 to {stages - 1}")
    curve = run_range_test(chosen[0], stage=args.stage, steps=args.steps)
    print(f"{chosen[0].run_id}, stage {curve.stage}: {len(curve.lrs)} steps"
          f"{' (stopped: the loss diverged)' if curve.stopped_early else ''}")
    step = max(1, len(curve.lrs) // 12)
    for lr, loss in list(zip(curve.lrs, curve.losses))[::step]:
        print(f"  lr {lr:9.2e}  loss {loss:.4f}")
    print(f"suggested lr: {curve.suggestion:.3g} ({curve.method}); lowest loss at {curve.min_loss_lr:.3g}")
    print(f"train at it with --lr {curve.suggestion:.2g}, or let each run find its own with --set train.lr=find")
    if args.out:
        from report.figures.lr_find import draw_curve

        path = draw_curve(curve.to_dict(), f"{chosen[0].run_id} (stage {curve.stage})", Path(args.out))
        print(f"curve: {path}")
    return 0


def add_runs_parser(sub) -> None:
    p = sub.add_parser("runs", help="list runs with status and metrics")
    p.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help=RUNS_HELP)
    p.add_argument("--grid", help="only this grid")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--group-by", metavar="KEY", default="",
                   help="order runs by an axis (train.lr or lr), dataset, backbone or strategy and summarise each "
                        "value (table format)")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args) -> int:
    from engine.store import RunStore

    store = RunStore(args.runs)
    if args.grid:
        store.find_grid(args.grid)
    records = store.runs(args.grid)
    if args.format == "table":
        from rich.console import Console

        from engine.console import group_keys, runs_table

        if not records:
            print(f"no runs in {args.runs}; start one with `finetune-tui run --preset demo`")
            return 0
        if args.group_by and args.group_by not in (keys := group_keys(records)):
            from engine.errors import UserError

            raise UserError(f"--group-by {args.group_by!r}: these runs can be grouped by {', '.join(sorted(keys))}")
        Console().print(runs_table(records, title=f"runs in {args.runs}", group_by=args.group_by))
        return 0
    import pandas as pd

    rows = []
    for rec in records:
        d = rec.summary.to_dict()
        for listed in ("val_acc_history", "val_loss_history", "epoch_seconds"):
            d.pop(listed, None)
        d.pop("events_offset", None)
        d["problem"] = rec.problem
        d["notes"] = [] if rec.problem else rec.summary.notes
        if args.format == "csv":  # one column per axis, so a spreadsheet can group by it
            d.update({f"axis:{k}": v for k, v in d.pop("axes", {}).items()})
        rows.append(d)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            row["warnings"], row["notes"] = "; ".join(row["warnings"]), "; ".join(row["notes"])
        pd.DataFrame(rows).to_csv(sys.stdout, index=False)
    return 0


def add_control_parsers(sub) -> None:
    p = sub.add_parser("resume", help="resume a grid in the background (finished runs are skipped)")
    p.add_argument("grid")
    p.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help=RUNS_HELP)
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser("cancel", help="cancel a grid, or one run of it")
    p.add_argument("grid")
    p.add_argument("run", nargs="?", help="run id (default: the whole grid)")
    p.add_argument("--runs", default=argparse.SUPPRESS, metavar="DIR", help=RUNS_HELP)
    p.set_defaults(func=cmd_cancel)


def cmd_resume(args) -> int:
    from engine.orchestrator import resume_detached

    gdir = resume_detached(args.runs, args.grid)
    print(f"grid {args.grid!r} resumed in the background: {gdir}")
    return 0


def cmd_cancel(args) -> int:
    from engine.store import RunStore

    store = RunStore(args.runs)
    if args.run:
        store.find_run(args.grid, args.run).request_cancel()
        print(f"asked {args.run} to stop")
    else:
        store.find_grid(args.grid).request_cancel()
        print(f"asked grid {args.grid} to stop")
    return 0


def add_settings_parsers(sub) -> None:
    p = sub.add_parser("settings", help="show the settings file and what is in force",
                       description="Show where the settings file is (FINETUNE_TUI_CONFIG, else "
                                   "$XDG_CONFIG_HOME/finetune-tui/config.toml), the run store in force and where it "
                                   "comes from, and the TUI theme and key bindings. The file (TOML) may set `runs`, "
                                   "`theme` and a [keymap] table of binding id = keys.")
    p.add_argument("--keys", action="store_true", help="list every TUI binding id with its key(s), for [keymap]")
    p.add_argument("--themes", action="store_true", help="list the TUI themes, for `theme`")
    p.set_defaults(func=cmd_settings)
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or tcsh)",
                       description='Print a tab-completion script for finetune-tui. Use it with '
                                   'eval "$(finetune-tui completion bash)" in ~/.bashrc, or save it: '
                                   'finetune-tui completion zsh > ~/.zfunc/_finetune-tui.')
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    p.set_defaults(func=cmd_completion)


def cmd_settings(args) -> int:
    from engine.settings import load_settings
    from engine.store import default_root_and_source

    settings = load_settings()
    print(f"settings file: {settings.path}" + ("" if settings.exists else " (not present)"))
    if getattr(args, "runs_given", False):
        print(f"run store: {args.runs} (--runs)")
    else:
        root, source = default_root_and_source()
        print(f"run store: {root} ({source})")
    print(f"theme: {settings.theme or 'textual-dark (default)'}")
    for binding_id, keys in sorted(settings.keymap.items()):
        print(f"keymap: {binding_id} = {keys}")
    from engine.settings import SettingsError
    from tui.app import binding_ids, check_look, theme_names

    try:  # what the TUI would refuse to open with is an error here too, not a listing that looks fine
        check_look(settings.theme, settings.keymap)
    except SettingsError as exc:
        raise SettingsError(f"settings file {settings.path}: {exc}") from None
    if args.keys or args.themes:
        if args.themes:
            print("themes: " + ", ".join(theme_names()))
        if args.keys:
            ids = binding_ids()
            wide = max((len(keys) for keys, _ in ids.values()), default=0) + 2  # "escape,backspace" is 16
            for binding_id, (keys, description) in ids.items():
                print(f"  {binding_id:<28}{keys:<{wide}}{description}")
    return 0


def cmd_completion(args) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune-tui", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Fine-tune pretrained image backbones over a dataset x backbone x strategy grid; "
                    "watch it live; export the best models to ONNX. With no command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"finetune-tui {__version__}")
    parser.add_argument("--runs", default=None, metavar="DIR", help=RUNS_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_run_parser(sub)
    add_lr_find_parser(sub)
    add_runs_parser(sub)
    add_control_parsers(sub)
    add_settings_parsers(sub)
    for module in ("export.cli", "report.cli", "study.cli", "sync.cli"):  # sub-packages register their own commands
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # inside: a broken settings file is one line too
        args = parser.parse_args(argv)
        args.runs_given = args.runs is not None
        if args.runs is None:
            from engine.store import default_root

            args.runs = str(default_root())
    except Exception as exc:
        return report_error(exc)
    try:
        if args.command is None:
            from tui.app import run_app

            return run_app(Path(args.runs))
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return report_error(exc)


def report_error(exc: Exception) -> int:
    """One line for anything that ends a command: exit 2 for what the user can fix, 1 for a bug."""
    from engine.errors import UserError

    if isinstance(exc, UserError):
        return fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if isinstance(exc, OSError):  # permissions, a file where a folder should be, a vanished mount
        where = f" {exc.filename}" if exc.filename else ""
        return fail(f"can't access{where}: {exc.strerror or exc}; check the path and its permissions")
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="finetune-tui-crash-", suffix=".txt", delete=False) as fh:
        traceback.print_exc(file=fh)
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    print(f"finetune-tui: internal error: {type(exc).__name__}: {first} (traceback in {fh.name}; please report it)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
