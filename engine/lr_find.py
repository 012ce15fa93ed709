"""The LR range test (fastai's ``lr_find``, after Smith 2017): which learning rate to train a stage at.

The stage's parameter groups train for ``steps`` batches while one multiplier
of their LRs grows exponentially from ``start`` to ``end``; the loss is
smoothed (exponential average, bias-corrected) and the test stops early once
it exceeds ``DIVERGE`` times its minimum. The suggestion is fastai's "valley":
the middle of the longest stretch over which the loss keeps falling, which is
steadier than the steepest point on short, noisy curves. The caller restores
the weights and every RNG afterwards, so the test leaves no trace on training
(``engine.trainer.Trainer.find_lr``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

START, END, STEPS = 1e-7, 10.0, 100
SMOOTH = 0.98  # fastai's smoothing of the loss
DIVERGE = 4.0  # stop when the smoothed loss is this many times its minimum
METHOD = "valley"


@dataclass
class LrCurve:
    """A range test's curve and its suggestion; ``lr_find.json`` in the run folder holds ``to_dict()``."""

    stage: int = 0
    lrs: list = field(default_factory=list)  # the head's LR at each step (other groups keep their ratio)
    losses: list = field(default_factory=list)  # smoothed training loss at each step
    raw_losses: list = field(default_factory=list)
    suggestion: float = 0.0  # the LR chosen
    method: str = METHOD
    min_loss_lr: float = 0.0  # where the smoothed loss was lowest (the suggestion is below it)
    stopped_early: bool = False  # the loss diverged before ``end``

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> "LrCurve":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in obj.items() if k in names})


def plot_ceiling(losses: list[float]) -> float:
    """The top of a plot of the curve: the divergence at the end would flatten the valley, so it is cut at
    1.5 times the starting loss (or the highest loss, if lower)."""
    return min(max(losses), 1.5 * losses[0])


def lr_at(step: int, steps: int, start: float = START, end: float = END) -> float:
    """The exponential ramp: ``start`` at step 0, ``end`` at step ``steps - 1``."""
    return start * (end / start) ** (step / max(1, steps - 1))


def range_test(train_step: Callable[[float], float], steps: int = STEPS, start: float = START, end: float = END,
               stage: int = 0) -> LrCurve:
    """Run ``train_step(lr) -> loss`` for ``steps`` growing LRs and read the suggestion off the curve."""
    curve = LrCurve(stage=stage)
    avg, best = 0.0, math.inf
    for i in range(steps):
        lr = lr_at(i, steps, start, end)
        loss = float(train_step(lr))
        if not math.isfinite(loss):
            curve.stopped_early = True
            break
        avg = SMOOTH * avg + (1 - SMOOTH) * loss
        smoothed = avg / (1 - SMOOTH ** (i + 1))
        curve.lrs.append(lr)
        curve.raw_losses.append(loss)
        curve.losses.append(smoothed)
        best = min(best, smoothed)
        if i > 0 and smoothed > DIVERGE * best:
            curve.stopped_early = True
            break
    if not curve.lrs:
        raise ValueError("the LR range test's first step already gave a non-finite loss")
    curve.min_loss_lr = curve.lrs[min(range(len(curve.losses)), key=curve.losses.__getitem__)]
    curve.suggestion = valley(curve.lrs, curve.losses)
    return curve


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's valley: the longest run of decreasing losses; a point 1/2 of the way into its middle third."""
    n0 = len(lrs)
    lo, hi = n0 // 10, n0 - 5 if n0 > 20 else n0  # fastai drops the first tenth and the last five points
    lrs, losses = lrs[lo:hi], losses[lo:hi]
    n = len(losses)
    if n < 3:
        return lrs[0] if lrs else START
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
            start = end - longest[end]
    third = (end - start) / 3
    return lrs[max(0, start + int(third) + int(third / 2))]


def run_range_test(run, stage: int | None = None, steps: int | None = None) -> LrCurve:
    """``finetune-tui lr-find``: the range test of one run config on its freshly built model, in a throwaway
    run folder (nothing is written to the run store). ``stage`` defaults to the strategy's first stage after
    any head warm-up."""
    import tempfile
    from dataclasses import replace

    from engine.store import RunDir, RunWriter
    from engine.strategies import is_warmup
    from engine.trainer import Trainer

    train = replace(run.train, lr="find", **({"lr_find_steps": steps} if steps else {}))
    run = replace(run, train=train)
    if stage is None:
        stage = 1 if is_warmup(train, 0) else 0
    with tempfile.TemporaryDirectory(prefix="finetune-tui-lr-find-") as tmp:
        rd = RunDir(tmp)
        rd.write_config(run)
        writer = RunWriter(rd, echo=False)
        try:
            trainer = Trainer(run, rd, writer)
            trainer.setup()
            trainer.prepare_generators()
            trainer.stage = stage
            trainer._build_optimizer(stage, 1)
            trainer._build_cache()
            trainer.find_lr(stage)
            return LrCurve.from_dict(rd.lr_find())
        finally:
            writer.close()
