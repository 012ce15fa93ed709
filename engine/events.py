"""The versioned event stream: the only way a training run talks to anyone.

A worker writes one JSON object per line to ``events.jsonl`` in its run folder
and to its stdout. Every event carries ``v`` (schema version), ``type`` and
``ts`` (unix seconds). Readers ignore unknown fields and unknown types so
newer workers never break older readers (timm's checkpoints carry a version the
same way). Every known field is checked against its annotation on read: a line
that isn't an event of this schema is skipped and counted (``EventBatch``), never
folded, so one bad line can't break a run's summary; events of a newer schema
version are skipped and counted apart, so a reader can say "upgrade".
"""

from __future__ import annotations

import json
import math
import time
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

# Terminal run states; a run in any of these will not change again.
TERMINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Event:
    """Base of all events; subclasses set ``type``."""

    type: str = ""
    v: int = SCHEMA_VERSION
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Started(Event):
    """The worker has built data and model and is about to train."""

    type: str = "started"
    run_id: str = ""
    pid: int = 0
    host: str = ""
    device: str = ""  # "cpu", "cuda:0"
    device_name: str = ""  # "Intel Xeon ...", "NVIDIA H100 80GB HBM3"
    versions: dict = field(default_factory=dict)  # torch, timm, python, cuda
    config: dict = field(default_factory=dict)  # resolved RunConfig
    weights: dict = field(default_factory=dict)  # which weights the backbone got
    data: dict = field(default_factory=dict)  # classes, train/val/test sizes, image size
    params: dict = field(default_factory=dict)  # total, trainable
    groups: list = field(default_factory=list)  # layer-group names, stem -> head
    initial_norms: dict = field(default_factory=dict)  # group -> L2 norm before training
    resumed_from_epoch: int = 0  # 0 = fresh start


@dataclass(frozen=True)
class Progress(Event):
    """Within-epoch progress; throttled (about one a second)."""

    type: str = "progress"
    epoch: int = 0
    epochs: int = 0
    # "decode" (images into the dataset cache; "decode-wait": another run decodes them), "features"
    # (caching frozen outputs), "lr_find", "train", "val", "test"
    phase: str = "train"
    step: int = 0
    steps: int = 0
    loss: float | None = None
    img_per_s: float | None = None


@dataclass(frozen=True)
class Epoch(Event):
    """One finished epoch: losses, accuracies, LR, speed, layer-group norms."""

    type: str = "epoch"
    epoch: int = 0  # 1-based
    epochs: int = 0  # the configured maximum
    train_loss: float = 0.0
    train_acc: float = 0.0
    val_loss: float = 0.0
    val_acc: float = 0.0
    lr: float = 0.0  # the head's learning rate
    lrs: dict = field(default_factory=dict)  # group -> learning rate (0 when frozen)
    img_per_s: float = 0.0  # training throughput
    seconds: float = 0.0  # wall time of this epoch
    group_norms: dict = field(default_factory=dict)  # group -> L2 norm of its weights
    stage: int = 0  # gradual unfreezing stage (0 for other strategies)
    trainable: int = 0  # trainable parameter count this epoch
    is_best: bool = False  # val_loss improved: best checkpoint was saved


@dataclass(frozen=True)
class Checkpoint(Event):
    """A checkpoint was written atomically."""

    type: str = "checkpoint"
    kind: str = "best"  # "best" or "last"
    epoch: int = 0
    path: str = ""  # relative to the run folder
    val_loss: float | None = None


@dataclass(frozen=True)
class EarlyStop(Event):
    """Validation loss stopped improving for ``patience`` epochs."""

    type: str = "early_stop"
    epoch: int = 0
    best_epoch: int = 0


@dataclass(frozen=True)
class Finished(Event):
    """Training and test evaluation are done; full results are in results.json."""

    type: str = "finished"
    best_epoch: int = 0
    epochs_run: int = 0
    train_seconds: float = 0.0  # the epochs' wall time (every epoch of the run, resumed or not)
    test: dict = field(default_factory=dict)  # accuracy, precision/recall/f1 macro+weighted
    total_seconds: float = 0.0  # this worker process's wall time, start to finish (0: written before it existed)
    phases: dict = field(default_factory=dict)  # seconds per phase of this process (engine.timing.PHASES)


@dataclass(frozen=True)
class Failed(Event):
    """The run stopped on an error; ``error`` is one line a user can act on."""

    type: str = "failed"
    error: str = ""
    kind: str = "crash"  # engine.errors.FAILURE_KINDS: "user" (bad input), "oom", "disk_full", "killed", "crash"
    traceback_file: str = ""  # relative path of the full traceback, if any


@dataclass(frozen=True)
class Cancelled(Event):
    """The run was stopped on request (cancel file, Ctrl-C, SIGTERM)."""

    type: str = "cancelled"
    reason: str = ""
    epoch: int = 0


@dataclass(frozen=True)
class Queued(Event):
    """A failed or cancelled run is in a grid's queue again (``resume``): it waits for a worker."""

    type: str = "queued"
    reason: str = ""


@dataclass(frozen=True)
class LrFound(Event):
    """An LR range test chose a stage's learning rate (the curve is in lr_find.json)."""

    type: str = "lr_find"
    stage: int = 0
    lr: float = 0.0  # the chosen (head) LR; the stage's other groups keep their ratio to it
    min_loss_lr: float = 0.0
    steps: int = 0  # batches the test took
    method: str = "valley"


@dataclass(frozen=True)
class Log(Event):
    """A human-readable line worth showing in the run's log tail."""

    type: str = "log"
    level: str = "info"
    message: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls  # type: ignore[misc]
    for cls in (Started, Progress, Epoch, Checkpoint, EarlyStop, Finished, Failed, Cancelled, Queued, LrFound, Log)
}


class BadEvent(ValueError):
    """A complete line of an event stream that is not an event of this schema (the message says why)."""


class NewerEvent(BadEvent):
    """An event written by a newer finetune-tui (its ``v`` is above SCHEMA_VERSION)."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(f"event of schema v{version}; this finetune-tui reads v{SCHEMA_VERSION}")


@lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, tuple[type, ...]]:
    """The types each field of dataclass ``cls`` accepts, from its annotations (``float`` also takes ``int``)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        allowed = []
        for arg in typing.get_args(hint) if union else (hint,):
            arg = typing.get_origin(arg) or arg  # dict[str, float] -> dict
            allowed += [arg, int] if arg is float else [arg]
        out[name] = tuple(allowed)
    return out


def misfits(cls: type, obj: dict) -> list[str]:
    """Names of the fields of ``cls`` whose value in ``obj`` has the wrong type (unknown keys are ignored)."""
    bad = []
    for name, allowed in field_types(cls).items():
        if name not in obj:
            continue
        value = obj[name]
        if isinstance(value, bool):
            ok = bool in allowed  # JSON true is no number
        elif isinstance(value, float):
            ok = float in allowed and math.isfinite(value)  # the writer never writes NaN or Infinity
        else:
            ok = isinstance(value, allowed)
        if not ok:
            bad.append(name)
    return bad


def decode_event(line: str | bytes) -> Event | None:
    """One line -> its event; None for a blank line or an unknown type of this schema (both skipped silently).

    Raises ``BadEvent`` for a line that is not an event (not JSON, no ``type``/``v``/``ts``, a field of
    the wrong type) and ``NewerEvent`` for one of a newer schema version.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadEvent("not UTF-8") from None
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        raise BadEvent("not JSON") from None
    if not isinstance(obj, dict) or not all(k in obj for k in ("type", "v", "ts")):
        raise BadEvent("not an event (needs type, v and ts)")
    version = obj["v"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadEvent(f"bad schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise NewerEvent(version)
    cls = EVENT_TYPES.get(obj["type"]) if isinstance(obj["type"], str) else None
    if cls is None:
        return None  # a type this reader doesn't know: skipped by design
    bad = misfits(cls, obj)
    if bad:
        raise BadEvent(f"{obj['type']} event with a wrong type of {', '.join(bad)}")
    names = {f.name for f in fields(cls)}
    event = cls(**{k: v for k, v in obj.items() if k in names})
    if isinstance(event, Epoch) and event.epoch < 1:
        raise BadEvent(f"epoch event for epoch {event.epoch}")
    return event


def parse_event(line: str) -> Event | None:
    """Parse one JSON line; None for blank, partial, foreign, unknown, wrong-typed or newer lines."""
    try:
        return decode_event(line)
    except BadEvent:
        return None


@dataclass
class EventBatch:
    """Events read from a stream, the offset after the last complete line, and what was skipped."""

    events: list[Event] = field(default_factory=list)
    offset: int = 0
    unreadable: int = 0  # complete lines that are not events of this schema
    newer: int = 0  # events of a newer schema version
    newer_version: int = 0  # the highest version among them


def scan_events(path: str | Path, offset: int = 0) -> EventBatch:
    """Read complete event lines from ``path`` starting at byte ``offset``, counting the lines skipped.

    The offset returned is just past the last complete line, so a caller can tail a live file
    without ever parsing a half-written line.
    """
    start = max(0, offset - 1)
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:  # missing, a folder in its place, no permission: nothing to read yet
        return EventBatch(offset=offset)
    skip = 0
    if offset > 0:
        # an offset must follow a newline; one that doesn't (the file was cut and grew again) resumes
        # at the next line start instead of reading half a line
        skip = 1 if data[:1] == b"\n" else data.find(b"\n") + 1
        if skip == 0:
            return EventBatch(offset=offset)
    end = data.rfind(b"\n")
    batch = EventBatch(offset=offset if end < skip else start + end + 1)
    for raw in data[skip: end + 1].splitlines():
        try:
            event = decode_event(raw)
        except NewerEvent as exc:
            batch.newer += 1
            batch.newer_version = max(batch.newer_version, exc.version)
            continue
        except BadEvent:
            batch.unreadable += 1
            continue
        if event is not None:
            batch.events.append(event)
    return batch


def read_events(path, offset: int = 0) -> tuple[list[Event], int]:
    """``scan_events`` without the counts: the events and the offset after the last complete line."""
    batch = scan_events(path, offset)
    return batch.events, batch.offset
