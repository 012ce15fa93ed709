"""The resume point: an epoch's checkpoint as one file, its RNG states, and the checks made before trusting it.

A run resumes from ``last_state.pt`` alone. It holds the model weights, the
optimizer and scheduler state, the loop counters, every metrics row so far,
the epoch's events, every RNG state the loop draws from (Mixup's and
RandAugment's included: numpy's and torch's), and the recipe's extra state
(the EMA weights, the LR a range test chose), and it is
replaced in one atomic step. A kill or a full disk at any moment leaves the
previous epoch's point or the new one, never a mix of two epochs. The other
files of an epoch derive from it and are written after it: ``best.safetensors``
(when the epoch improved) and ``metrics.csv``. A resume rewrites whichever of
them is behind.

Loaded with ``torch.load(weights_only=True)`` only: the file holds tensors
and plain data. Every refusal is one line that names the file and never
suggests loading it unsafely.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from engine import events as ev
from engine.model_meta import ModelMetaError, read_safetensors_meta
from engine.store import RunDir, StoreError

FORMAT = "finetune-tui-state/2"


class Refused(Exception):
    """The resume point can't be trusted; the message says why in one line."""


@dataclass
class LoopState:
    """The training loop's counters after ``epoch`` epochs, and the metrics rows of those epochs."""

    epoch: int = 0
    stage: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    early_stopped: bool = False
    rows: list = field(default_factory=list)

    def counters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "rows"}


_COUNTER_TYPES = {"epoch": int, "stage": int, "best_val_loss": float, "best_epoch": int, "bad_epochs": int,
                  "early_stopped": bool}


# --- RNG states ----------------------------------------------------------------------


def capture_rng(cuda: bool, generators: Mapping[str, torch.Generator | None] | None = None) -> dict:
    """Every RNG state the loop can draw from: torch (CPU, CUDA), numpy, python, and the loop's own generators."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "generators": {name: g.get_state() for name, g in (generators or {}).items() if g is not None},
    }


def restore_rng(rng: dict, cuda: bool, generators: Mapping[str, torch.Generator | None] | None = None) -> list[str]:
    """Set the states ``capture_rng`` took; returns the names of those that can't continue here (they keep their seed).

    The global states are checked when the point is loaded. A point written on
    a GPU and resumed on the CPU (or on fewer GPUs), or one saved before a
    generator was used (augmentation switched on), can't continue those.
    """
    torch.set_rng_state(rng["torch"])
    np_state = rng["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = rng["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    skipped = []
    if cuda:
        if len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        else:
            skipped.append("cuda")
    for name, gen in (generators or {}).items():
        if gen is None:
            continue
        saved = rng["generators"].get(name)
        try:
            gen.set_state(saved)
        except (RuntimeError, TypeError):  # none saved, or a CUDA generator's state where a CPU one's goes
            skipped.append(name)
    return skipped


def _check_rng(rng) -> None:
    """Raise Refused unless ``rng`` has what ``restore_rng`` sets (tried on throwaway generators)."""
    try:
        torch.Generator().set_state(rng["torch"])
        np_state = rng["numpy"]
        np.random.RandomState().set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                                           np_state["has_gauss"], np_state["gauss"]))
        py = rng["python"]
        random.Random().setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
        if not isinstance(rng["cuda"], list) or not all(isinstance(t, torch.Tensor) for t in rng["cuda"]):
            raise TypeError("cuda")
        if not isinstance(rng["generators"], dict):
            raise TypeError("generators")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, OverflowError) as exc:
        raise Refused(f"{RunDir.STATE} has no usable RNG states ({type(exc).__name__})") from None


# --- writing -------------------------------------------------------------------------


def save(run_dir: RunDir, model: torch.nn.Module, optimizer, scheduler, state: LoopState,
         events: list[ev.Event], rng: dict, extra: dict | None = None) -> None:
    """Atomically replace last_state.pt with the point after ``state.epoch`` (raises DiskFull when space runs out).

    ``extra`` holds the recipe's own state: the weight average (``ema``), the LR a range test chose
    (``found_lr``); tensors and plain data only.
    """
    point = {
        "format": FORMAT,
        "model": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "loop": state.counters(),
        "rows": list(state.rows),
        "events": [e.to_dict() for e in events],  # the epoch's announcements, replayed if a kill cut them off
        "rng": rng,
        "extra": dict(extra or {}),
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: a full disk then surfaces as OSError(ENOSPC), not torch text
            torch.save(point, fh)

    run_dir.write_with(run_dir.state_file, write)


# --- reading and checking ------------------------------------------------------------


def load(run_dir: RunDir, expected: Mapping[str, torch.Tensor]) -> dict | None:
    """The verified resume point, None when there is none; Refused naming what is wrong otherwise.

    ``expected`` is the fresh model's state dict: the point's weights must have
    the same names and shapes. Nothing is applied here, so a refusal leaves the
    model as it was built.
    """
    path = run_dir.state_file
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes about pickle protocols; the refusal says enough
            point = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's own text would suggest weights_only=False: never pass that on
        raise Refused(f"{path.name} is damaged or was not written by finetune-tui ({type(exc).__name__})") from None
    if not isinstance(point, dict) or point.get("format") != FORMAT:
        found = point.get("format") if isinstance(point, dict) else None
        raise Refused(f"{path.name} is in {'format ' + repr(found) if found else 'an older format'}, not {FORMAT}")
    missing = [k for k in ("model", "optimizer", "scheduler", "loop", "rows", "events", "rng") if k not in point]
    if missing:
        raise Refused(f"{path.name} lacks {', '.join(missing)}")
    if not isinstance(point.get("extra", {}), dict):
        raise Refused(f"{path.name}'s extra state is not a table")
    state = loop_state(point)
    _check_weights(point["model"], expected)
    _check_rng(point["rng"])
    _check_best(run_dir, state)
    return point


def loop_state(point: dict) -> LoopState:
    """The LoopState a point holds; Refused when its counters and rows don't agree."""
    name = RunDir.STATE
    loop, rows = point["loop"], point["rows"]
    if not isinstance(loop, dict) or set(loop) != set(_COUNTER_TYPES):
        raise Refused(f"{name}'s loop counters are not the expected ones")
    for key, kind in _COUNTER_TYPES.items():
        value = loop[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Refused(f"{name}'s {key} is {value!r}, not a{'n' if kind is int else ''} {kind.__name__}")
    state = LoopState(**loop, rows=rows)
    if state.epoch < 1:
        raise Refused(f"{name} is for epoch {state.epoch}")
    if not isinstance(rows, list) or [r.get("epoch") if isinstance(r, dict) else None for r in rows] != list(
            range(1, state.epoch + 1)):
        raise Refused(f"{name} is for epoch {state.epoch} but holds metrics rows for other epochs")
    if not 1 <= state.best_epoch <= state.epoch or not math.isfinite(state.best_val_loss):
        raise Refused(f"{name}'s best epoch {state.best_epoch} is not one of its {state.epoch} epochs")
    if rows[state.best_epoch - 1].get("val_loss") != state.best_val_loss:
        raise Refused(f"{name}'s best val loss is not the one of its best epoch {state.best_epoch}")
    return state


def _check_weights(weights, expected: Mapping[str, torch.Tensor]) -> None:
    name = RunDir.STATE
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise Refused(f"{name}'s weights are not a table of tensors")
    if set(weights) != set(expected):
        extra, lack = sorted(set(weights) - set(expected)), sorted(set(expected) - set(weights))
        raise Refused(f"{name}'s weights are for another model ({len(lack)} missing, {len(extra)} unexpected, "
                      f"e.g. {(lack or extra)[0]})")
    for key, ref in expected.items():
        if weights[key].shape != ref.shape:
            raise Refused(f"{name}'s {key} has shape {tuple(weights[key].shape)}, this model's {tuple(ref.shape)}")


def _check_best(run_dir: RunDir, state: LoopState) -> None:
    """best.safetensors must hold the point's best epoch, unless that epoch is the point's own (then it's rebuilt)."""
    if state.best_epoch == state.epoch:
        return  # written after the point: it may be behind, and the point's weights are the best ones
    try:
        meta = read_safetensors_meta(run_dir.best)
    except (ModelMetaError, OSError) as exc:
        raise Refused(f"{RunDir.BEST} is missing or unreadable, but {RunDir.STATE}'s best is epoch "
                      f"{state.best_epoch} ({type(exc).__name__})") from None
    if meta.epoch != state.best_epoch or not math.isclose(meta.val_loss, state.best_val_loss, rel_tol=1e-9):
        raise Refused(f"{RunDir.BEST} holds epoch {meta.epoch} but {RunDir.STATE}'s best is epoch {state.best_epoch}")


def best_is_behind(run_dir: RunDir, state: LoopState) -> bool:
    """The point's own epoch is the best one but best.safetensors doesn't hold it yet (a kill or full disk between)."""
    if state.best_epoch != state.epoch:
        return False
    try:
        return read_safetensors_meta(run_dir.best).epoch != state.epoch
    except (ModelMetaError, OSError):
        return True


def metrics_are_behind(run_dir: RunDir, state: LoopState) -> bool:
    """metrics.csv doesn't list exactly the point's epochs."""
    try:
        frame = run_dir.metrics()
    except StoreError:  # unreadable: rewrite it from the point
        return True
    return frame is None or frame["epoch"].tolist() != list(range(1, state.epoch + 1))


def replay_events(point: dict) -> list[ev.Event]:
    """The epoch's events stored in the point (epoch, checkpoint, early stop), for a stream a kill cut short."""
    out = []
    for obj in point["events"] if isinstance(point["events"], list) else []:
        cls = ev.EVENT_TYPES.get(obj.get("type")) if isinstance(obj, dict) else None
        if cls is None:
            continue
        names = {f.name for f in fields(cls)}
        try:
            out.append(cls(**{k: v for k, v in obj.items() if k in names}))
        except TypeError:
            continue
    return out
