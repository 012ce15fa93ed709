"""Which device a run trains on, checked, and how it is named: torch only (no timm), so a grid's up-front
check of ``train.device`` doesn't import the trainer."""

from __future__ import annotations

import os
import platform

import torch

from engine.config import ConfigError


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"train.device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device {spec!r} asked for, but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device {spec!r}: this process sees {torch.cuda.device_count()} GPU(s)")
    return dev


def device_label(device: torch.device, visible: str | None = None) -> str:
    """The device as the machine names it: cuda:0 of a process pinned to GPU 3 is cuda:3."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if device.type != "cuda" or not visible:
        return str(device)
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    index = device.index or 0
    return f"cuda:{ids[index]}" if index < len(ids) else str(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
