"""An exponential moving average of the weights (timm's ModelEmaV3), evaluated and kept in place of the raw ones.

With ``train.ema`` the average is updated after every optimizer step; every
validation, the best checkpoint and the test use it. It is swapped into the
training model for those (``swapped_in``), so the activation cache and the
cached-tail network keep working on the same modules, and swapped out again
before training goes on. Its state goes into the resume point.
"""

from __future__ import annotations

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
