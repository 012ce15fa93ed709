"""Follow one run folder for the detail screen: its epochs, log lines, results and export.

No Textual here. :class:`RunTail` tails ``events.jsonl`` from the last offset
and re-reads the JSON files only when their size or mtime changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine import events as ev
from engine.store import RunDir, StoreError
from tui import format as fmt
from tui.store_watcher import Signature, file_signature

MAX_LOG_LINES = 200
WORKER_LOG_LINES = 40


@dataclass(frozen=True)
class LogLine:
    """One line of the run's log tail."""

    ts: float
    level: str  # info, warning, error
    message: str


@dataclass(frozen=True)
class RunDetail:
    """What the detail screen shows about one run; replaced, never changed."""

    path: Path
    config: dict | None = None
    problem: str = ""  # why the run folder is unreadable, if it is
    started: ev.Started | None = None
    epochs: tuple[ev.Epoch, ...] = ()
    progress: ev.Progress | None = None
    final: ev.Event | None = None  # Finished, Failed or Cancelled
    logs: tuple[LogLine, ...] = ()
    results: dict | None = None
    results_problem: str = ""
    export: dict | None = None
    export_problem: str = ""
    worker_log: tuple[str, ...] = ()
    lr_find: dict | None = None  # lr_find.json: the LR range test's curve (train.lr = "find")
    lr_find_problem: str = ""  # why lr_find.json could not be read
    version: int = 0
    unreadable_events: int = 0  # lines of events.jsonl skipped (not events of this schema)
    newer_events: int = 0  # events of a newer finetune-tui, skipped
    newer_version: int = 0
    summary_epoch: int = 0  # the epoch summary.json reached (more than the events hold when they were cut)

    @property
    def missing_epochs(self) -> list[int]:
        """Epochs the run's summary went through that no epoch event is left for."""
        have = {e.epoch for e in self.epochs}
        return [n for n in range(1, self.summary_epoch + 1) if n not in have]

    @property
    def notes(self) -> list[str]:
        """What the curves and the log can't show: lost, skipped or newer events."""
        out = []
        missing = self.missing_epochs
        if missing:
            out.append(f"events for {epoch_ranges(missing)} are missing")
        if self.unreadable_events:
            out.append(f"{self.unreadable_events} unreadable event{'s' if self.unreadable_events != 1 else ''}")
        if self.newer_events:
            out.append(f"{self.newer_events} event{'s' if self.newer_events != 1 else ''} from a newer finetune-tui "
                       f"(v{self.newer_version}); upgrade to read them")
        return out

    @property
    def groups(self) -> list[str]:
        if self.started and self.started.groups:
            return list(self.started.groups)
        if self.epochs:
            return list(self.epochs[-1].group_norms)
        return []

    def norm_changes(self) -> list[tuple[str, float, float, float]]:
        """Per layer group: (name, initial norm, latest norm, relative change)."""
        if not self.epochs:
            return []
        initial = self.started.initial_norms if self.started else {}
        latest = self.epochs[-1].group_norms
        out = []
        for g in self.groups:
            if g not in latest:
                continue
            n0 = initial.get(g) or (self.epochs[0].group_norms.get(g) if self.epochs else None)
            n1 = latest[g]
            change = abs(n1 - n0) / n0 if n0 else 0.0
            out.append((g, n0 or 0.0, n1, change))
        return out


def epoch_ranges(epochs: list[int]) -> str:
    """``[3, 4, 5, 6, 9]`` -> ``"epochs 3-6, 9"``; ``[4]`` -> ``"epoch 4"``."""
    spans: list[list[int]] = []
    for n in sorted(epochs):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in spans)
    return f"epoch{'s' if len(epochs) > 1 else ''} {text}"


def _describe(event: ev.Event) -> LogLine | None:
    """The log line an event stands for (None for events that are not worth a line)."""
    if isinstance(event, ev.Log):
        return LogLine(event.ts, event.level, event.message)
    if isinstance(event, ev.Started):
        resumed = f", resumed after epoch {event.resumed_from_epoch}" if event.resumed_from_epoch else ""
        return LogLine(event.ts, "info", f"started on {event.device} ({event.device_name}), pid {event.pid}{resumed}")
    if isinstance(event, ev.Epoch):
        best = " best" if event.is_best else ""
        return LogLine(event.ts, "info", f"epoch {event.epoch}/{event.epochs}: val_loss {event.val_loss:.4f} "
                                         f"val_acc {event.val_acc * 100:.1f}%{best}")
    if isinstance(event, ev.EarlyStop):
        return LogLine(event.ts, "info", f"early stop at epoch {event.epoch} (best {event.best_epoch})")
    if isinstance(event, ev.Finished):
        acc = event.test.get("accuracy")
        acc_text = f", test accuracy {acc * 100:.1f}%" if isinstance(acc, (int, float)) else ""
        return LogLine(event.ts, "info", f"finished after {event.epochs_run} epochs{acc_text}")
    if isinstance(event, ev.Failed):
        return LogLine(event.ts, "error", f"failed ({fmt.failure_kind(event.kind)}): {event.error}")
    if isinstance(event, ev.Cancelled):
        return LogLine(event.ts, "warning", f"cancelled: {event.reason}")
    if isinstance(event, ev.Queued):
        return LogLine(event.ts, "info", f"queued: {event.reason}")
    if isinstance(event, ev.LrFound):
        return LogLine(event.ts, "info", f"LR range test (stage {event.stage}, {event.steps} steps): lr {event.lr:.3g}"
                                         f" (lowest loss at {event.min_loss_lr:.3g})")
    return None


class RunTail:
    """Incremental reader of one run folder (through its ``engine.store.RunDir``)."""

    def __init__(self, path: str | Path | RunDir):
        self.dir = path if isinstance(path, RunDir) else RunDir(path)
        self.path = self.dir.path
        self.offset = 0
        self.version = 0
        self._sigs: dict[Path, Signature] = {}
        self._started: ev.Started | None = None
        self._epochs: list[ev.Epoch] = []
        self._progress: ev.Progress | None = None
        self._final: ev.Event | None = None
        self._logs: list[LogLine] = []
        self._config: tuple[dict | None, str] = (None, "")
        self._results: tuple[dict | None, str] = (None, "")
        self._export: tuple[dict | None, str] = (None, "")
        self._lr_find: tuple[dict | None, str] = (None, "")
        self._worker_log: tuple[str, ...] = ()
        self._summary_epoch = 0
        self._skipped = [0, 0, 0]  # unreadable, newer, newest version
        self._detail: RunDetail | None = None

    def _changed(self, path: Path) -> Signature | bool:
        """The file's new signature when it changed since the last look (None = now missing), else False."""
        sig = file_signature(path)
        if path in self._sigs and sig == self._sigs[path]:
            return False
        self._sigs[path] = sig
        return sig

    def poll(self) -> RunDetail | None:
        """A new :class:`RunDetail` when anything changed since the last call, else None."""
        rd = self.dir
        changed = self._detail is None
        if (sig := self._changed(rd.summary_file)) is not False:  # before the events: they are never behind it
            self._summary_epoch = self._stored_epoch() if sig else 0
            changed = True
        old = self._sigs.get(rd.events_file)
        events_sig = self._changed(rd.events_file)
        if events_sig is not False:
            if events_sig is None or (old and (events_sig[0] != old[0] or events_sig[1] < self.offset)):
                self._reset()
            batch = rd.scan_events(self.offset)
            self.offset = batch.offset
            self._skipped[0] += batch.unreadable
            self._skipped[1] += batch.newer
            self._skipped[2] = max(self._skipped[2], batch.newer_version)
            for event in batch.events:
                try:
                    self._apply(event)
                except Exception:  # noqa: BLE001 - an event this screen can't show must not stall it
                    self._skipped[0] += 1
            changed = True

        if (sig := self._changed(rd.config_file)) is not False:
            self._config = self._read(self._config_dict) if sig else (None, f"{rd.config_file} is missing")
            changed = True
        if (sig := self._changed(rd.results_file)) is not False:
            self._results = self._read(rd.results) if sig else (None, "")
            changed = True
        if (sig := self._changed(rd.export.summary_file)) is not False:
            self._export = self._read(rd.export.summary) if sig else (None, "")
            changed = True
        if (sig := self._changed(rd.lr_find_file)) is not False:
            self._lr_find = self._read(rd.lr_find) if sig else (None, "")
            changed = True
        if (sig := self._changed(rd.worker_log)) is not False:
            self._worker_log = rd.worker_log_tail(WORKER_LOG_LINES) if sig else ()
            changed = True
        if not changed:
            return None
        self.version += 1
        (config, problem), (results, results_problem), (export, export_problem) = (
            self._config, self._results, self._export)
        self._detail = RunDetail(
            path=self.path, config=config, problem=problem, started=self._started, epochs=tuple(self._epochs),
            progress=self._progress, final=self._final, logs=tuple(self._logs), results=results,
            results_problem=results_problem, export=export, export_problem=export_problem,
            worker_log=self._worker_log, lr_find=self._lr_find[0], lr_find_problem=self._lr_find[1],
            version=self.version,
            unreadable_events=self._skipped[0], newer_events=self._skipped[1], newer_version=self._skipped[2],
            summary_epoch=self._summary_epoch,
        )
        return self._detail

    def _config_dict(self) -> dict:
        """The run's config as the engine resolves it (validated: an invalid config.json says why)."""
        return self.dir.config().to_dict()

    def _stored_epoch(self) -> int:
        """The epoch summary.json says the run reached (0 when it can't be read)."""
        try:
            epoch = self.dir.stored_summary().get("epoch", 0)
        except StoreError:
            return 0
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0

    def _reset(self) -> None:
        self.offset = 0
        self._skipped = [0, 0, 0]
        self._started, self._progress, self._final = None, None, None
        self._epochs, self._logs = [], []

    def _apply(self, event: ev.Event) -> None:
        if isinstance(event, ev.Started):
            self._started = event
            self._final = None
        elif isinstance(event, ev.Epoch):
            # a resumed run replays from its checkpoint: drop epochs past this one
            self._epochs = [e for e in self._epochs if e.epoch < event.epoch] + [event]
        elif isinstance(event, ev.Progress):
            self._progress = event
        elif isinstance(event, (ev.Finished, ev.Failed, ev.Cancelled)):
            self._final = event
            self._progress = None
        elif isinstance(event, ev.Queued):
            self._final = None
        line = _describe(event)
        if line is not None:
            self._logs.append(line)
            del self._logs[:-MAX_LOG_LINES]

    def _read(self, reader: Callable[[], dict | None]) -> tuple[dict | None, str]:
        """``reader()``'s object, or None and why it can't be read (paths relative to the run folder)."""
        try:
            return reader(), ""
        except StoreError as exc:
            return None, str(exc).replace(str(self.path) + "/", "")
