"""Latency of an ONNX model under onnxruntime and of the same model in PyTorch, with provenance.

Both are timed the same way in the same process: the same preprocessed input
batch, already on the device; warm-up runs first; then timed runs until both
``min_runs`` and ``min_seconds`` are reached (or ``max_seconds`` passes). GPU
runs are synchronised before the clock stops: IO binding keeps onnxruntime's
inputs and outputs on the GPU, ``torch.cuda.synchronize`` does it for PyTorch.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
import torch

from export.ort_session import CPU, SessionInfo, check_distributions, installed_distributions

log = logging.getLogger(__name__)

DEFAULT_BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class BenchConfig:
    warmup_runs: int = 5  # untimed runs first (CUDA/TensorRT build their kernels/engines here)
    min_runs: int = 30  # timed runs at least ...
    min_seconds: float = 1.0  # ... and at least this long
    max_seconds: float = 10.0  # stop here even below min_runs (big models on CPU), after 3 runs
    max_runs: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)


QUICK = BenchConfig(warmup_runs=1, min_runs=3, min_seconds=0.0, max_seconds=1.0, max_runs=10)


def time_runs(step: Callable[[], object], cfg: BenchConfig) -> np.ndarray:
    """Seconds per call of ``step`` (which must return only once the work is done)."""
    for _ in range(cfg.warmup_runs):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < cfg.max_runs:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(times) >= cfg.min_runs and elapsed >= cfg.min_seconds:
            break
        if elapsed >= cfg.max_seconds and len(times) >= 3:
            break
    return np.asarray(times)


def summarise(times: np.ndarray, batch: int) -> dict:
    """p50/p90/p99 ms per batch, images/s over all timed runs, and how many runs."""
    p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e3
    return {"p50_ms": round(float(p50), 4), "p90_ms": round(float(p90), 4), "p99_ms": round(float(p99), 4),
            "img_per_s": round(float(batch * len(times) / times.sum()), 2),
            "mean_ms": round(float(times.mean() * 1e3), 4), "runs": int(len(times))}


def make_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """``batch`` model inputs (preprocessed float32, or uint8 images for the embedded-preprocessing
    file), repeating the given ones if there are fewer."""
    reps = -(-batch // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:batch])


def ort_step(info: SessionInfo, x: np.ndarray) -> Callable[[], object]:
    """One inference (every output); IO binding with device-resident input and outputs on CUDA/TensorRT."""
    session = info.session
    name = session.get_inputs()[0].name  # export.metadata's INPUT_NAME, or EMBEDDED_INPUT
    outputs = [o.name for o in session.get_outputs()]
    if info.actual == CPU:
        return lambda: session.run(outputs, {name: x})
    device_id = int(info.options.get("device_id", 0))
    x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", device_id)
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, x_dev)
    for out in outputs:
        binding.bind_output(out, "cuda", device_id)

    def step():
        session.run_with_iobinding(binding)  # synchronises the provider's stream by default
        binding.synchronize_outputs()
        return x_dev  # keeps the device input alive as long as the closure

    return step


def torch_step(model: torch.nn.Module, x: np.ndarray, device: str) -> Callable[[], object]:
    """Eager forward on ``device`` under inference_mode, synchronised on CUDA."""
    model = model.eval().to(device)
    xt = torch.from_numpy(x).to(device)
    cuda = device.startswith("cuda")

    def step():
        with torch.inference_mode():
            out = model(xt)
        if cuda:
            torch.cuda.synchronize(device)
        return out

    return step


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run PyTorch with ``n`` intra-op threads (as onnxruntime gets), restoring the setting after."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def bench_ort(info: SessionInfo, images: np.ndarray, batches, cfg: BenchConfig) -> dict[str, dict]:
    out = {}
    for b in batches:
        stats = summarise(time_runs(ort_step(info, make_batch(images, b)), cfg), b)
        if info.session.get_providers()[0] != info.actual:  # fallback is disabled; this must not happen
            raise RuntimeError(f"session changed provider to {info.session.get_providers()[0]} while timing")
        out[str(b)] = stats
    return out


def bench_torch(model: torch.nn.Module, images: np.ndarray, batches, device: str, cfg: BenchConfig,
                threads: int | None = None) -> dict[str, dict]:
    out = {}
    with torch_threads(threads if device == "cpu" else None):
        for b in batches:
            x = make_batch(images.astype(np.float32, copy=False), b)
            out[str(b)] = summarise(time_runs(torch_step(model, x, device), cfg), b)
    return out


def ratios(ort_lat: dict, torch_lat: dict) -> dict[str, float]:
    """ONNX/PyTorch throughput per batch (> 1: onnxruntime is faster)."""
    return {b: round(ort_lat[b]["img_per_s"] / torch_lat[b]["img_per_s"], 3)
            for b in ort_lat if b in torch_lat and torch_lat[b]["img_per_s"]}


# --- provenance -------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def load_average() -> float | None:
    """1-minute load average when the figures were taken: other work on the CPU skews them."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def busy_machine() -> str:
    """A warning when other work already loads the CPUs (1-minute load average above their count)."""
    load, cpus = load_average(), os.cpu_count() or 1
    if load is not None and load > cpus:
        return (f"machine busy before timing (load average {load} on {cpus} CPUs): CPU figures are unreliable, "
                f"measure again on an idle machine")
    return ""


def provenance(threads: int | None = None, cfg: BenchConfig | None = None) -> dict:
    """Where and with what every figure was measured."""
    cuda = torch.cuda.is_available()
    return {
        "host": platform.node(), "os": platform.platform(), "machine": platform.machine(),
        "python": platform.python_version(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "gpu": gpu_name(), "cuda_available_torch": cuda,
        "torch_cuda": torch.version.cuda or "", "cudnn": torch.backends.cudnn.version() if cuda else None,
        "torch": torch.__version__, "onnxruntime": ort.__version__, "onnxruntime_device": ort.get_device(),
        "onnxruntime_distributions": installed_distributions(), "onnxruntime_conflict": check_distributions(),
        "onnx": _version("onnx"), "timm": _version("timm"), "numpy": np.__version__,
        "threads": threads, "bench": cfg.to_dict() if cfg else None, "load_avg_1m": load_average(),
        "timing": "time.perf_counter per batch; inputs preprocessed and on the device before timing; "
                  "GPU: IO binding (onnxruntime) / torch.cuda.synchronize (PyTorch); PyTorch eager, inference_mode",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
