"""Mixed precision on CUDA: bf16 where the GPU computes it natively, fp16 with loss scaling elsewhere.

``torch.cuda.is_bf16_supported()`` is also true on GPUs that only emulate bf16
(T4 and V100, compute capability 7.x), where bf16 matmuls run far slower than
fp16 ones; native bf16 tensor cores start with Ampere (8.0). fp16 has a narrow
exponent range, so its small gradients underflow without a GradScaler. CPU
runs train in fp32 (``train.amp`` is ignored there). The choice is a pure
function of the device's capability, so it is tested without a GPU.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

NATIVE_BF16 = (8, 0)  # Ampere and later


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    scaler: bool  # fp16: scale the loss (torch.amp.GradScaler)
    reason: str  # one line for the log

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def choose(device_type: str, amp: bool, capability: tuple[int, int] | None = None, hip: bool = False) -> Precision:
    """The precision of a run on ``device_type`` whose GPU has compute ``capability`` (major, minor)."""
    if device_type != "cuda":
        return Precision(None, False, f"fp32 on {device_type}")
    if not amp:
        return Precision(None, False, "fp32 (train.amp = false)")
    if hip:  # ROCm reports its own capability numbers; torch's bf16 check is native there
        return Precision(torch.bfloat16, False, "bf16 autocast (ROCm)")
    if capability is not None and tuple(capability) >= NATIVE_BF16:
        return Precision(torch.bfloat16, False, f"bf16 autocast (compute capability {capability[0]}.{capability[1]}: "
                                                "native bf16)")
    cap = f"{capability[0]}.{capability[1]}" if capability is not None else "unknown"
    return Precision(torch.float16, True, f"fp16 autocast with loss scaling (compute capability {cap}: bf16 would "
                                          "be emulated)")


def for_device(device: torch.device, amp: bool) -> Precision:
    if device.type != "cuda":
        return choose(device.type, amp)
    return choose("cuda", amp, torch.cuda.get_device_capability(device), hip=torch.version.hip is not None)


class Amp:
    """Autocast and the backward/step of one run's precision (a GradScaler for fp16)."""

    def __init__(self, precision: Precision, device: torch.device):
        self.precision = precision
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if precision.scaler else None

    def autocast(self):
        if self.precision.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.precision.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip_grad: float = 0.0) -> None:
        """``loss.backward(); optimizer.step()``, through the scaler when there is one (it skips a step
        whose gradients overflowed and lowers the scale). ``clip_grad`` > 0 clips the gradients' global norm
        first, on unscaled gradients (timm's dispatch_clip_grad)."""
        params = [p for g in optimizer.param_groups for p in g["params"]] if clip_grad > 0 else []
        if self.scaler is None:
            loss.backward()
            if params:
                _clip(params, clip_grad)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if params:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            _clip(params, clip_grad)
        self.scaler.step(optimizer)
        self.scaler.update()


def _clip(params: list, value: float) -> None:
    from timm.utils import dispatch_clip_grad

    dispatch_clip_grad(params, value)
