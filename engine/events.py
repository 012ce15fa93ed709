"""The versioned event stream: the only way a training run talks to anyone.

A worker writes one JSON object per line to ``events.jsonl`` in its run folder
and to its stdout. Every event carries ``v`` (schema version), ``type`` and
``ts`` (unix seconds). Readers must ignore unknown fields and unknown types so
newer workers never break older readers (timm's checkpoints carry a version the
same way).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
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
    phase: str = "train"  # "features" (caching frozen outputs), "lr_find", "train", "val", "test"
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
    train_seconds: float = 0.0
    test: dict = field(default_factory=dict)  # accuracy, precision/recall/f1 macro+weighted


@dataclass(frozen=True)
class Failed(Event):
    """The run stopped on an error; ``error`` is one line a user can act on."""

    type: str = "failed"
    error: str = ""
    kind: str = "crash"  # "user" (bad input), "oom", "crash", "killed"
    traceback_file: str = ""  # relative path of the full traceback, if any


@dataclass(frozen=True)
class Cancelled(Event):
    """The run was stopped on request (cancel file, Ctrl-C, SIGTERM)."""

    type: str = "cancelled"
    reason: str = ""
    epoch: int = 0


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
    for cls in (Started, Progress, Epoch, Checkpoint, EarlyStop, Finished, Failed, Cancelled, LrFound, Log)
}


def parse_event(line: str) -> Event | None:
    """Parse one JSON line; None for blank, partial, foreign or unknown lines.

    Unknown fields are dropped and unknown types ignored, so a newer worker's
    stream still reads. A torn last line (a worker killed mid-write) is None.
    """
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "type" not in obj or "v" not in obj:
        return None
    cls = EVENT_TYPES.get(obj["type"])
    if cls is None:
        return None
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in obj.items() if k in names})
    except TypeError:
        return None


def read_events(path, offset: int = 0) -> tuple[list[Event], int]:
    """Read complete event lines from ``path`` starting at byte ``offset``.

    Returns the events and the offset just past the last complete line, so a
    caller can tail a live file without ever parsing a half-written line.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for raw in data[: end + 1].splitlines():
        ev = parse_event(raw.decode("utf-8", errors="replace"))
        if ev is not None:
            events.append(ev)
    return events, offset + end + 1
