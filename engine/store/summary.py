"""A run's summary: the fold of its event stream, what every list view shows.

Three rules live here and nowhere else:

- **best**: the kept checkpoint is the epoch with the lowest validation loss
  (the first one, as the trainer keeps only strict improvements); a run's
  ``best_val_acc`` is that epoch's validation accuracy, and runs are ranked by
  it (``selection_key``). The test set never takes part in choosing.
- **dead worker**: a run whose events say ``running`` but whose worker holds
  no lock any more (or, on another host, stopped beating) died without a
  final event (``settle``).
- **done means tested**: a finished run whose results.json has gone since
  (deleted, or a copy of the store that left it out) says so in its notes,
  and how ``resume`` brings it back (``settle_finished``).

Folding never trusts what it reads: events come checked field by field
(``engine.events``), values nested in their dicts are taken only when they have
the expected type, and what could not be read is counted in the summary
(``unreadable_events``, ``newer_events``) and said in its ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from engine import events as ev
from engine.errors import disk_full_message, free_megabytes

STATUSES = ("queued", "running", "done", "failed", "cancelled", "unreadable")
# RunSummary fields worked out from the run folder (its files, its grid's lock) each time, never kept in summary.json
UNSTORED = ("results_missing", "retest", "stalled")
BEST_RULE = "best = the epoch with the lowest validation loss (the kept checkpoint); runs are ranked by its val accuracy"
DEAD_WORKER = "worker stopped without a final event (killed or crashed); run the grid again to resume it"
NOT_STARTED = "not started: its grid stopped"
LOW_DISK_MB = 64  # below this, a worker that died without a word most likely met a full disk
MAX_WARNINGS = 5  # warning lines a summary keeps (the latest ones)


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
    warnings: list = field(default_factory=list)  # the run's warning lines, e.g. a refused checkpoint
    unreadable_events: int = 0  # lines of events.jsonl skipped: not an event of this schema
    newer_events: int = 0  # events of a newer finetune-tui, skipped
    newer_version: int = 0  # their schema version
    events_offset: int | None = None  # bytes of events.jsonl folded into this summary (None: not recorded)
    events_missing: bool = False  # events.jsonl holds less than this summary was folded from
    total_seconds: float | None = None  # the finishing worker's wall time, start to end (None: not recorded)
    phases: dict = field(default_factory=dict)  # its seconds per phase: startup, data, model, features, train, test
    # read from the folder, never stored (settle_finished): a done run's results.json is gone, and whether its
    # resume point can bring it back without training again
    results_missing: bool = False
    retest: bool = False
    stalled: bool = False  # queued, in a grid no orchestrator drives (settle)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in UNSTORED:
            out.pop(name)
        return out

    @classmethod
    def from_dict(cls, obj: dict) -> "RunSummary":
        """A stored summary.json; TypeError when a field has the wrong type (the caller rebuilds it)."""
        bad = ev.misfits(cls, obj)
        for name, ok in (("val_acc_history", _is_number), ("val_loss_history", _is_number),
                         ("epoch_seconds", _is_number), ("warnings", lambda w: isinstance(w, str))):
            if isinstance(obj.get(name), list) and not all(v is None or ok(v) for v in obj[name]):
                bad.append(name)
        if bad:
            raise TypeError(f"summary field(s) of the wrong type: {', '.join(bad)}")
        names = set(cls.__dataclass_fields__) - set(UNSTORED)
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
        seconds = [s for s in self.epoch_seconds if _is_number(s)]
        if self.status != "running" or not seconds or not self.epochs:
            return None
        mean = sum(seconds) / len(seconds)
        return max(0.0, (self.epochs - self.epoch) * mean)

    @property
    def notes(self) -> list[str]:
        """What a user should know about this run beyond its status: skipped events, lost events, warnings."""
        out = []
        if self.unreadable_events:
            out.append(f"{self.unreadable_events} unreadable event{'s' if self.unreadable_events != 1 else ''} "
                       "in its events.jsonl (skipped)")
        if self.newer_events:
            out.append(f"{self.newer_events} event{'s' if self.newer_events != 1 else ''} from a newer finetune-tui "
                       f"(v{self.newer_version}); upgrade to read them")
        if self.events_missing:
            out.append("events are missing: events.jsonl is shorter than its summary (the summary is kept)")
        if self.stalled and self.status == "queued":
            out.append(f"queued, but grid {self.grid} is not running (its orchestrator stopped: see orchestrator.log "
                       f"in the grid's folder); `finetune-tui resume {self.grid}` starts it")
        if self.results_missing:
            again = "tests it again from its last checkpoint" if self.retest else "trains it again"
            out.append(f"results.json is missing (deleted?); `finetune-tui resume {self.grid}` {again}")
        return out + list(self.warnings)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value) -> float | None:
    """``value`` when it is a finite number (a nested value from an event may be anything)."""
    return value if _is_number(value) else None


def _dig(obj, *keys):
    """``obj[k1][k2]...``, or None when a level is missing or not a dict."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _upto(values: list, keep: int, value) -> list:
    """``values`` cut to ``keep`` epochs (a gap, from lost events, padded with None), then ``value``."""
    return values[:keep] + [None] * (keep - len(values)) + [value]


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
    finite = [(v, i) for i, v in enumerate(val_losses, 1) if _is_number(v)]
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
        description = event.weights.get("description")
        summary.weights = description if isinstance(description, str) else ""
        epochs = _dig(event.config, "train", "epochs")
        summary.epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else summary.epochs
        axes = event.config.get("axes")
        summary.axes = dict(axes) if isinstance(axes, dict) else summary.axes
        summary.error = ""
        summary.error_kind = ""
    elif isinstance(event, ev.Progress):
        summary.status = "running"
        summary.started_at = summary.started_at or event.ts  # decoding data comes before the started event
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
        keep = event.epoch - 1  # >= 0: the reader refuses epoch events before epoch 1
        summary.val_acc_history = _upto(summary.val_acc_history, keep, event.val_acc)
        summary.val_loss_history = _upto(summary.val_loss_history, keep, event.val_loss)
        summary.epoch_seconds = _upto(summary.epoch_seconds, keep, event.seconds)
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
        summary.test_accuracy = _number(event.test.get("accuracy"))
        summary.test_f1_macro = _number(event.test.get("f1_macro"))
        summary.train_seconds = event.train_seconds
        summary.total_seconds = event.total_seconds or None
        summary.phases = dict(event.phases)
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
    elif isinstance(event, ev.Queued):  # its epochs so far stand: the worker resumes from its checkpoint
        summary.status = "queued"
        summary.error = summary.error_kind = summary.phase = ""  # finished_at stays: where its time so far ends
    elif isinstance(event, ev.Log) and event.level == "warning" and event.message:
        line = event.message.splitlines()[0][:300]
        if line not in summary.warnings:
            summary.warnings = (summary.warnings + [line])[-MAX_WARNINGS:]
    return summary


def fold_batch(summary: RunSummary, batch: ev.EventBatch) -> RunSummary:
    """Fold every event of ``batch``, count what it skipped and move ``events_offset`` past it (in place)."""
    for event in batch.events:
        fold(summary, event)
    summary.events_offset = batch.offset
    summary.unreadable_events += batch.unreadable
    summary.newer_events += batch.newer
    summary.newer_version = max(summary.newer_version, batch.newer_version)
    return summary


def dead_worker_reason(run_dir, because: str = "") -> tuple[str, str]:
    """(message, kind) for a worker that stopped without a final event; a nearly full disk is named, and
    ``because`` (how it was told: "no heartbeat from HOST for N s")."""
    free = free_megabytes(run_dir)
    if free is not None and free < LOW_DISK_MB:
        return f"worker stopped without a final event; {disk_full_message(run_dir, free)}", "disk_full"
    if because:
        return f"worker stopped without a final event ({because}); run the grid again to resume it", "killed"
    return DEAD_WORKER, "killed"


def settle(summary: RunSummary, alive: bool, run_dir, grid_running: bool | None = None,
           because: str = "") -> RunSummary:
    """The dead-worker rule: ``running`` without a live worker is ``failed`` (in place).

    ``alive`` comes from ``RunDir.liveness``: the worker's flock on its own host, its heartbeat from
    anywhere else (``because`` says which heartbeat stopped).

    Given ``grid_running`` (whether an orchestrator holds the grid), a ``queued`` run of a grid that
    nothing drives, on a nearly full disk, is ``failed`` too: its grid stopped for lack of space before it
    could start it, and couldn't even write that down. Elsewhere such a run is ``stalled`` (its notes say
    so, and how to resume) until the next call that doesn't find it so.
    """
    if summary.status == "running" and not alive:
        summary.status = "failed"
        summary.error, summary.error_kind = dead_worker_reason(run_dir, because)
    elif summary.status == "queued" and grid_running is False and not alive:
        free = free_megabytes(run_dir)
        if free is not None and free < LOW_DISK_MB:
            summary.status, summary.error_kind = "failed", "disk_full"
            summary.error = f"{NOT_STARTED}; {disk_full_message(run_dir, free)}"
    # killed, or died at start: its notes say how to go on
    summary.stalled = summary.status == "queued" and grid_running is False and not alive
    return summary


def settle_finished(summary: RunSummary, run_dir) -> RunSummary:
    """The done-means-tested rule: a ``done`` run whose results.json is gone says so, in ``results_missing``
    (in place; its notes say how ``resume`` brings it back).

    ``run_dir`` is the run's ``RunDir``. The summary's test metrics came with the finished event and stand;
    the per-class report, confusion matrix and worst errors were in the file. ``resume`` starts such a run
    again (``Orchestrator.pending``, which also takes a done run whose best.safetensors is gone): its worker
    re-tests from the last epoch's resume point (rebuilding best.safetensors when that epoch was the kept
    one), else trains it again.
    """
    summary.results_missing = summary.status == "done" and not run_dir.results_file.is_file()
    # the resume point holds the last epoch's weights: enough unless the kept epoch was an earlier one
    summary.retest = summary.results_missing and run_dir.state_file.is_file() and (
        run_dir.best.is_file() or summary.best_epoch == summary.epoch)
    return summary


def is_dead_worker_error(error: str) -> bool:
    """True for the message ``settle`` writes (so a later final event may replace it)."""
    return (error.startswith(DEAD_WORKER) or error.startswith("worker stopped without a final event")
            or error.startswith(NOT_STARTED))
