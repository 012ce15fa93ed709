"""The run store: a folder per grid, a folder per run, written atomically.

Layout (``runs/`` by default)::

    <root>/<grid>/grid.json          grid config + run ids (written by the orchestrator)
    <root>/<grid>/grid.lock          flock held while an orchestrator drives the grid
    <root>/<grid>/orchestrator.log   the orchestrator's log (detached grids)
    <root>/<grid>/cancel             present = cancel the whole grid
    <root>/<grid>/<run>/config.json  resolved RunConfig
    <root>/<grid>/<run>/events.jsonl the event stream (engine.events)
    <root>/<grid>/<run>/summary.json fold of the events, for fast listing
    <root>/<grid>/<run>/metrics.csv  one row per epoch
    <root>/<grid>/<run>/best.safetensors, last.safetensors, last_state.pt
    <root>/<grid>/<run>/results.json test metrics, per-class report, confusion, top errors
    <root>/<grid>/<run>/test_probs.npz probs, labels, preds over the test split
    <root>/<grid>/<run>/run.lock     flock held while a worker is alive
    <root>/<grid>/<run>/cancel       present = cancel this run
    <root>/<grid>/<run>/worker.log   the worker's stderr (logging, tracebacks)

Every file is replaced atomically (temp file + ``os.replace``) except the
append-only ``events.jsonl``, whose readers skip a torn last line.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine import events as ev

DEFAULT_ROOT = "runs"
_UMASK = os.umask(0)
os.umask(_UMASK)
STATUSES = ("queued", "running", "done", "failed", "cancelled", "unreadable")


class StoreError(Exception):
    """A store file is missing or unreadable; the message names it."""


# --- atomic writes -----------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the temp file over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; store files are as readable as any other
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise StoreError(f"{path} is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not valid JSON ({exc})") from None


# --- liveness through flock --------------------------------------------------


class FileLock:
    """An exclusive flock; released automatically when the holder dies."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def is_locked(path: str | Path) -> bool:
    """True while some live process holds the flock on ``path``."""
    try:
        fh = open(path, "r")
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
    finally:
        fh.close()


# --- run summaries: a fold over the event stream ------------------------------


@dataclass
class RunSummary:
    """Everything a list view needs about one run, derived from its events."""

    run_id: str = ""
    grid: str = ""
    dataset: str = ""
    backbone: str = ""
    strategy: str = ""
    status: str = "queued"
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    phase: str = ""
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    best_val_acc: float | None = None
    best_epoch: int = 0
    lr: float | None = None
    img_per_s: float | None = None
    val_acc_history: list = field(default_factory=list)
    test_accuracy: float | None = None
    test_f1_macro: float | None = None
    error: str = ""
    error_kind: str = ""
    weights: str = ""  # short description of the weights used
    device: str = ""
    pid: int = 0
    started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    epoch_seconds: list = field(default_factory=list)
    train_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> "RunSummary":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in obj.items() if k in names})

    @property
    def eta_seconds(self) -> float | None:
        """Remaining time at the mean epoch time so far (upper bound: early stop may come first)."""
        if self.status != "running" or not self.epoch_seconds or not self.epochs:
            return None
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        return max(0.0, (self.epochs - self.epoch) * mean)


def fold(summary: RunSummary, event: ev.Event) -> RunSummary:
    """Apply one event to a summary (in place) and return it."""
    summary.updated_at = event.ts
    if isinstance(event, ev.Started):
        summary.status = "running"
        summary.pid = event.pid
        summary.device = event.device
        summary.started_at = summary.started_at or event.ts
        summary.weights = event.weights.get("description", "")
        summary.epochs = event.config.get("train", {}).get("epochs", summary.epochs)
        summary.error = ""
        summary.error_kind = ""
    elif isinstance(event, ev.Progress):
        summary.status = "running"
        summary.phase = event.phase
        summary.step, summary.steps = event.step, event.steps
        summary.epochs = event.epochs or summary.epochs
        if event.img_per_s:
            summary.img_per_s = event.img_per_s
    elif isinstance(event, ev.Epoch):
        summary.status = "running"
        summary.epoch, summary.epochs = event.epoch, event.epochs
        summary.train_loss, summary.train_acc = event.train_loss, event.train_acc
        summary.val_loss, summary.val_acc = event.val_loss, event.val_acc
        summary.lr, summary.img_per_s = event.lr, event.img_per_s
        # a resumed run replays from its checkpoint: drop history past this epoch
        summary.val_acc_history = summary.val_acc_history[: event.epoch - 1] + [event.val_acc]
        summary.epoch_seconds = summary.epoch_seconds[: event.epoch - 1] + [event.seconds]
        if event.is_best or summary.best_val_acc is None:
            if event.is_best:
                summary.best_epoch = event.epoch
        summary.best_val_acc = max(summary.val_acc_history)
        summary.phase = "train"
    elif isinstance(event, ev.Finished):
        summary.status = "done"
        summary.best_epoch = event.best_epoch or summary.best_epoch
        summary.test_accuracy = event.test.get("accuracy")
        summary.test_f1_macro = event.test.get("f1_macro")
        summary.train_seconds = event.train_seconds
        summary.finished_at = event.ts
        summary.phase = ""
    elif isinstance(event, ev.Failed):
        summary.status = "failed"
        summary.error, summary.error_kind = event.error, event.kind
        summary.finished_at = event.ts
        summary.phase = ""
    elif isinstance(event, ev.Cancelled):
        summary.status = "cancelled"
        summary.error = event.reason
        summary.finished_at = event.ts
        summary.phase = ""
    return summary


# --- reading the store --------------------------------------------------------


DEAD_WORKER = "worker stopped without a final event (killed or crashed); run the grid again to resume it"


@dataclass
class RunRecord:
    """A run as found on disk: its folder, summary, and why it is unreadable if so."""

    path: Path
    summary: RunSummary
    problem: str = ""  # non-empty = unreadable, with the reason

    @property
    def run_id(self) -> str:
        return self.path.name


class RunStore:
    """Read access to a run store; the worker and orchestrator write through their own helpers."""

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)

    def grids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / "grid.json").exists())

    def grid_dir(self, grid: str) -> Path:
        return self.root / grid

    def grid_info(self, grid: str) -> dict:
        return read_json(self.grid_dir(grid) / "grid.json")

    def grid_running(self, grid: str) -> bool:
        return is_locked(self.grid_dir(grid) / "grid.lock")

    def run_dirs(self, grid: str) -> list[Path]:
        gdir = self.grid_dir(grid)
        try:
            ids = self.grid_info(grid).get("runs", [])
        except StoreError:
            ids = []
        # a run folder holds a config or events; report/, export/ and the like are not runs
        found = {p.name for p in gdir.iterdir() if p.is_dir() and (p.name in ids or (p / "config.json").exists()
                 or (p / "events.jsonl").exists())} if gdir.is_dir() else set()
        ordered = [i for i in ids if i in found] + sorted(found - set(ids))
        return [gdir / i for i in ordered]

    def runs(self, grid: str | None = None) -> list[RunRecord]:
        grids = [grid] if grid else self.grids()
        return [load_run(d, g) for g in grids for d in self.run_dirs(g)]


def load_run(run_dir: str | Path, grid: str = "") -> RunRecord:
    """Read a run folder; never raises: problems come back in ``problem``."""
    run_dir = Path(run_dir)
    grid = grid or run_dir.parent.name
    try:
        cfg = read_json(run_dir / "config.json")
        summary = RunSummary(
            run_id=run_dir.name,
            grid=grid,
            dataset=cfg["data"]["dataset"],
            backbone=cfg["model"]["backbone"],
            strategy=cfg["train"]["strategy"],
            epochs=cfg["train"]["epochs"],
        )
    except (StoreError, KeyError, TypeError) as exc:
        reason = str(exc) if isinstance(exc, StoreError) else f"{run_dir / 'config.json'} lacks {exc}"
        return RunRecord(run_dir, RunSummary(run_id=run_dir.name, grid=grid, status="unreadable", error=reason), reason)
    try:
        stored = RunSummary.from_dict(read_json(run_dir / "summary.json"))
        summary = stored if stored.run_id else summary
    except StoreError:
        # no summary yet (or torn by an old writer): rebuild it from the events
        events, _ = ev.read_events(run_dir / "events.jsonl")
        for event in events:
            fold(summary, event)
    if summary.status == "running" and not is_locked(run_dir / "run.lock"):
        summary.status, summary.error, summary.error_kind = "failed", DEAD_WORKER, "killed"
    return RunRecord(run_dir, summary)
