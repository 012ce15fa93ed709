"""A run's summary: the fold of its event stream, what every list view shows.

Two rules live here and nowhere else:

- **best**: the kept checkpoint is the epoch with the lowest validation loss
  (the first one, as the trainer keeps only strict improvements); a run's
  ``best_val_acc`` is that epoch's validation accuracy, and runs are ranked by
  it (``selection_key``). The test set never takes part in choosing.
- **dead worker**: a run whose events say ``running`` but whose worker holds
  no lock any more died without a final event (``settle``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from engine import events as ev
from engine.errors import disk_full_message, free_megabytes

STATUSES = ("queued", "running", "done", "failed", "cancelled", "unreadable")
BEST_RULE = "best = the epoch with the lowest validation loss (the kept checkpoint); runs are ranked by its val accuracy"
DEAD_WORKER = "worker stopped without a final event (killed or crashed); run the grid again to resume it"
LOW_DISK_MB = 64  # below this, a worker that died without a word most likely met a full disk


@dataclass
class RunSummary:
    """Everything a list view needs about one run, derived from its events."""

    run_id: str = ""
    grid: str = ""
    dataset: str = ""
    backbone: str = ""
    strategy: str = ""
    axes: dict = field(default_factory=dict)  # the values this run takes on its grid's axes (or search trial)
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
    best_val_acc: float | None = None  # val accuracy of the best (kept) epoch
    best_val_loss: float | None = None
    best_epoch: int = 0
    lr: float | None = None
    img_per_s: float | None = None
    val_acc_history: list = field(default_factory=list)
    val_loss_history: list = field(default_factory=list)
    test_accuracy: float | None = None
    test_f1_macro: float | None = None
    error: str = ""
    error_kind: str = ""
    weights: str = ""  # short description of the weights used
    device: str = ""
    host: str = ""
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
        summary = cls(**{k: v for k, v in obj.items() if k in names})
        at_best = _at(summary.val_acc_history, summary.best_epoch)
        if at_best is not None and not summary.val_loss_history:
            # written before best_val_loss existed, when best_val_acc was the highest of any epoch
            summary.best_val_acc = at_best
        return summary

    @property
    def axes_text(self) -> str:
        """The axis values as a short label: ``lr=0.0003 image_size=96`` (each key's last part)."""
        return " ".join(f"{k.rpartition('.')[2]}={axis_value_text(v)}" for k, v in self.axes.items())

    @property
    def eta_seconds(self) -> float | None:
        """Remaining time at the mean epoch time so far (upper bound: early stop may come first)."""
        if self.status != "running" or not self.epoch_seconds or not self.epochs:
            return None
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        return max(0.0, (self.epochs - self.epoch) * mean)


def axis_value_text(value) -> str:
    """How an axis value reads in tables: 0.0003, 96, true, cosine."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _at(values: list, epoch: int):
    return values[epoch - 1] if 0 < epoch <= len(values) else None


def best_epoch_of(val_losses: list) -> int:
    """1-based epoch of the first lowest validation loss (0 when there is none)."""
    finite = [(v, i) for i, v in enumerate(val_losses, 1) if isinstance(v, (int, float)) and math.isfinite(v)]
    return min(finite)[1] if finite else 0


def selection_key(summary: RunSummary) -> tuple:
    """Sort key that ranks runs best first: best-epoch val accuracy, then lower val loss, then run id."""
    acc = summary.best_val_acc if summary.best_val_acc is not None else -math.inf
    loss = summary.best_val_loss if summary.best_val_loss is not None else math.inf
    return (-acc, loss, summary.run_id)


def fold(summary: RunSummary, event: ev.Event) -> RunSummary:
    """Apply one event to a summary (in place) and return it."""
    summary.updated_at = event.ts
    if isinstance(event, ev.Started):
        summary.status = "running"
        summary.pid = event.pid
        summary.host = event.host
        summary.device = event.device
        summary.started_at = summary.started_at or event.ts
        summary.weights = event.weights.get("description", "")
        summary.epochs = event.config.get("train", {}).get("epochs", summary.epochs)
        summary.axes = dict(event.config.get("axes") or summary.axes)
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
        keep = event.epoch - 1
        summary.val_acc_history = summary.val_acc_history[:keep] + [event.val_acc]
        summary.val_loss_history = summary.val_loss_history[:keep] + [event.val_loss]
        summary.epoch_seconds = summary.epoch_seconds[:keep] + [event.seconds]
        summary.best_epoch = best_epoch_of(summary.val_loss_history)
        summary.best_val_acc = _at(summary.val_acc_history, summary.best_epoch)
        summary.best_val_loss = _at(summary.val_loss_history, summary.best_epoch)
        summary.phase = "train"
    elif isinstance(event, ev.Finished):
        summary.status = "done"
        summary.best_epoch = event.best_epoch or summary.best_epoch
        acc, loss = _at(summary.val_acc_history, summary.best_epoch), _at(summary.val_loss_history, summary.best_epoch)
        summary.best_val_acc = summary.best_val_acc if acc is None else acc
        summary.best_val_loss = summary.best_val_loss if loss is None else loss
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


def dead_worker_reason(run_dir) -> tuple[str, str]:
    """(message, kind) for a worker that stopped without a final event; a nearly full disk is named."""
    free = free_megabytes(run_dir)
    if free is not None and free < LOW_DISK_MB:
        return f"worker stopped without a final event; {disk_full_message(run_dir, free)}", "disk_full"
    return DEAD_WORKER, "killed"


def settle(summary: RunSummary, alive: bool, run_dir) -> RunSummary:
    """The dead-worker rule: ``running`` without a live worker is ``failed`` (in place)."""
    if summary.status == "running" and not alive:
        summary.status = "failed"
        summary.error, summary.error_kind = dead_worker_reason(run_dir)
    return summary


def is_dead_worker_error(error: str) -> bool:
    """True for the message ``settle`` writes (so a later final event may replace it)."""
    return error.startswith(DEAD_WORKER) or error.startswith("worker stopped without a final event")
