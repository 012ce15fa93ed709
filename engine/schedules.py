"""Learning-rate schedules, one per stage: the seed's plateau rule, cosine with warm-up, one-cycle, constant.

Every schedule answers the trainer's two calls: ``after_step()`` after each
optimizer step and ``after_epoch(val_loss)`` after each validation; each kind
acts in one of them. Cosine is timm's
``CosineLRScheduler`` and constant timm's ``StepLRScheduler`` with no decay,
both stepped per update (``t_in_epochs=False``) with a linear warm-up from 0;
one-cycle is torch's ``OneCycleLR``; plateau is torch's ``ReduceLROnPlateau``
(the seed's). Each scales every param group from its own LR, so layer-wise LRs
keep their ratios. ``state_dict`` / ``load_state_dict`` go into the resume
point, so a resumed run continues the same curve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from engine.config import TrainConfig

SCHEDULES = ("plateau", "cosine", "onecycle", "constant")


class Schedule:
    """A stage's LR schedule over ``total_steps`` optimizer steps."""

    def __init__(self, kind: str, optimizer: "torch.optim.Optimizer", cfg: "TrainConfig", total_steps: int,
                 steps_per_epoch: int):
        import torch
        from timm.scheduler import CosineLRScheduler, StepLRScheduler

        self.kind = kind
        self.updates = 0  # optimizer steps taken in this stage
        total_steps = max(1, total_steps)
        warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps - 1)
        lrs = [g["lr"] for g in optimizer.param_groups]
        if kind == "plateau":
            self.impl = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        elif kind == "cosine":
            # one absolute floor for all groups (timm's lr_min): a fraction of the smallest group LR, so no
            # group's LR ever rises
            self.impl = CosineLRScheduler(
                optimizer, t_initial=total_steps, lr_min=cfg.cosine_floor * min(lrs), warmup_t=warmup,
                warmup_lr_init=0.0, t_in_epochs=False, cycle_limit=1)
        elif kind == "constant":
            self.impl = StepLRScheduler(optimizer, decay_t=total_steps + 1, decay_rate=1.0, warmup_t=warmup,
                                        warmup_lr_init=0.0, t_in_epochs=False)
        elif kind == "onecycle":
            self.impl = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=lrs, total_steps=total_steps + 1, pct_start=0.25, anneal_strategy="cos",
                div_factor=25.0, final_div_factor=1.0 / max(cfg.cosine_floor, 1e-4) / 25.0, cycle_momentum=False)
        else:
            raise ValueError(f"schedule {kind!r} is not one of {', '.join(SCHEDULES)}")

    def after_step(self) -> None:
        """After each optimizer step of the stage."""
        self.updates += 1
        if self.kind in ("cosine", "constant"):
            self.impl.step_update(self.updates)
        elif self.kind == "onecycle":
            self.impl.step()

    def after_epoch(self, val_loss: float) -> None:
        """After an epoch's validation."""
        if self.kind == "plateau":
            self.impl.step(val_loss)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "updates": self.updates, "impl": self.impl.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"the saved schedule is {state.get('kind')!r}, this run's {self.kind!r}")
        self.updates = int(state["updates"])
        self.impl.load_state_dict(state["impl"])


def build_schedule(optimizer, cfg: "TrainConfig", epochs: int, steps_per_epoch: int) -> Schedule:
    """The schedule ``cfg.schedule`` for a stage of ``epochs`` epochs of ``steps_per_epoch`` steps."""
    return Schedule(cfg.schedule, optimizer, cfg, epochs * steps_per_epoch, steps_per_epoch)
