"""onnxruntime sessions: which providers exist, which one a session really uses.

onnxruntime-gpu lists CUDA and TensorRT as available even where their
libraries can't load, and a session asked for CUDA then runs on CPU with only
a log line (FACTS.md). ``open_session`` reads ``get_providers()`` back and
reports such a session as a fallback, with the loader's reason.

No torch here: ``predict`` uses this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.metadata
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# Fastest first; the benchmark measures each one that is available.
PROVIDER_ORDER = (TRT, CUDA, CPU)
SHORT = {TRT: "trt", CUDA: "cuda", CPU: "cpu"}
ALIASES = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA, "trt": TRT, "tensorrt": TRT}
_PROVIDER_LIBS = {CUDA: "libonnxruntime_providers_cuda.so", TRT: "libonnxruntime_providers_tensorrt.so"}
# Distributions that install the ``onnxruntime`` module; two of them overwrite each other's files.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-qnn", "onnxruntime-training", "ort-nightly", "ort-nightly-gpu")


def resolve_provider(name: str) -> str:
    """``cpu``/``cuda``/``trt`` or a full provider name -> the full name."""
    full = ALIASES.get(name.lower(), name)
    if full not in PROVIDER_ORDER and full not in ort.get_all_providers():
        raise ValueError(f"execution provider {name!r} not known; use cpu, cuda or trt")
    return full


def short_name(provider: str) -> str:
    return SHORT.get(provider, provider.replace("ExecutionProvider", "").lower())


# --- packaging ----------------------------------------------------------------


def installed_distributions() -> list[str]:
    """``["onnxruntime-gpu 1.31.1", ...]``: every installed distribution that provides ``onnxruntime``."""
    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def conflict_message(dists: list[str]) -> str:
    """Empty when at most one onnxruntime distribution is installed, else what is wrong and the fix."""
    if len(dists) < 2:
        return ""
    names = [d.split()[0] for d in dists]
    keep = "onnxruntime-gpu" if "onnxruntime-gpu" in names else names[0]
    return (f"{' and '.join(dists)} are installed together; they share the `onnxruntime` module and the "
            f"CUDA provider breaks. Fix: pip uninstall -y {' '.join(names)} && pip install {keep}")


@functools.lru_cache(maxsize=1)
def check_distributions() -> str:
    """Warn once per process when two onnxruntime distributions are installed; returns the warning."""
    msg = conflict_message(installed_distributions())
    if msg:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        log.warning(msg)
    return msg


# --- sessions -----------------------------------------------------------------


def provider_load_error(provider: str) -> str:
    """Why a GPU provider's shared library doesn't load here (the dynamic loader's message), or ''."""
    lib = _PROVIDER_LIBS.get(provider)
    if not lib:
        return ""
    path = Path(ort.__file__).parent / "capi" / lib
    if not path.exists():
        return f"{lib} is not part of this onnxruntime build"
    try:
        ctypes.CDLL(str(path))
    except OSError as exc:
        return str(exc)
    return ""


@dataclass
class SessionInfo:
    """A session and what it actually runs on."""

    session: ort.InferenceSession
    requested: str
    providers: list[str]  # session.get_providers(), in priority order
    options: dict[str, Any] = field(default_factory=dict)  # provider options as the session reports them
    threads: int = 0  # intra-op threads (CPU)
    error: str = ""  # why the requested provider isn't the one used

    @property
    def actual(self) -> str:
        return self.providers[0] if self.providers else ""

    @property
    def fell_back(self) -> bool:
        return self.actual != self.requested

    def describe(self) -> dict[str, Any]:
        return {"requested": self.requested, "actual": self.providers, "fallback": self.fell_back,
                "error": self.error, "options": self.options, "threads": self.threads}


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def open_session(model: str | Path | bytes, provider: str = CPU, *, threads: int | None = None,
                 provider_options: dict[str, Any] | None = None, quiet: bool = True) -> SessionInfo:
    """A session asking for ``provider`` (CPU as fallback for GPU ones); check what it really uses.

    ``threads``: intra-op threads (default: the CPUs this process may use); inter-op is 1 and
    execution sequential, so CPU figures are reproducible. ``quiet`` silences onnxruntime's own
    error log about providers that fail to load: the fallback is reported in the result instead.
    """
    check_distributions()
    provider = resolve_provider(provider)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if quiet:
        so.log_severity_level = 3
    providers: list = [(provider, provider_options or {})]
    if provider != CPU:
        providers.append(CPU)
    source = str(model) if isinstance(model, Path) else model
    if quiet:  # the provider-bridge error goes to the default logger
        ort.set_default_logger_severity(4)
    printed = io.StringIO()  # onnxruntime print()s its "EP Error ... Falling back" story to stdout
    try:
        with contextlib.redirect_stdout(printed):
            session = ort.InferenceSession(source, so, providers=providers)
    finally:
        if quiet:
            ort.set_default_logger_severity(2)  # onnxruntime's default (warning); there is no getter
    # a provider failing later, inside run(), would otherwise switch to CPU silently mid-benchmark
    session.disable_fallback()
    used = session.get_providers()
    info = SessionInfo(session, provider, used, session.get_provider_options().get(used[0], {}),
                       so.intra_op_num_threads)
    if info.fell_back:
        ep_error = " ".join(line for line in printed.getvalue().splitlines() if line.startswith("EP Error"))
        reason = (provider_load_error(provider) or ep_error[:300]
                  or "the provider failed to initialise (see onnxruntime's log)")
        info.error = f"{provider} requested, session runs on {info.actual}: {reason}"
        # info: every caller says it itself (predict's warning line, export's notes); a warning here went to
        # logging's last-resort handler too, so `predict --provider cuda` printed it twice
        log.info(info.error)
    return info


def available_providers() -> list[str]:
    """What this onnxruntime build offers, fastest first (may include providers that can't load)."""
    offered = ort.get_available_providers()
    return [p for p in PROVIDER_ORDER if p in offered]
