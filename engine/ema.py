"""An exponential moving average of the weights (timm's ModelEmaV3), evaluated and kept in place of the raw ones.

With ``train.ema`` the average is updated after every optimizer step; every
validation, the best checkpoint and the test use it. It is swapped into the
training model for those (``swapped_in``), so the activation cache and the
cached-tail network keep working on the same modules, and swapped out again
before training goes on. Its state goes into the resume point.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        from timm.utils import ModelEmaV3

        # use_warmup: the decay grows with the step count (timm's schedule), so a short fine-tune isn't
        # dominated by the starting weights
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True)
        self.ema.module.requires_grad_(False)
        self.updates = 0

    def short_of_decay(self, steps: int) -> str:
        """A line for the run's log when its ``steps`` end before the warm-up reaches the configured decay
        (timm's schedule, 1 - (1 + step) ** -2/3, reaches 0.998 after 11,181 steps); '' otherwise."""
        end, decay = self.ema.get_decay(steps), self.ema.decay
        if end >= decay:
            return ""
        # timm counts a step from update_after_step + 1
        need = math.ceil(((1 - decay) ** (-1 / self.ema.warmup_power) - 1) * self.ema.warmup_gamma
                         ) + self.ema.update_after_step + 1
        return (f"EMA: the decay warms up to {end:.4f} by the last of about {steps} steps; train.ema_decay {decay:g} "
                f"would take {need:,.0f} steps (an average of about the last {1 / (1 - end):.0f} steps)")

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        self.ema.update(model, step=self.updates)

    @contextmanager
    def swapped_in(self, model: nn.Module):
        """``model`` holds the averaged weights (and BatchNorm statistics) inside the block."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.ema.module.state_dict())
        try:
            yield model
        finally:
            model.load_state_dict(raw)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "weights": {k: v.detach().to("cpu") for k, v in
                                                     self.ema.module.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.ema.module.load_state_dict(state["weights"])
