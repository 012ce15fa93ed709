"""Smaller variants of an exported fp32 model: int8 (static QDQ, CPU) and fp16 (GPU).

int8: QDQ format, uint8 activations and int8 per-channel weights (int8 activations on ARM),
MinMax calibration on 256 training images. onnxruntime's docstring suggests ``reduce_range``
(7-bit weights) on x86 CPUs without VNNI; measured here (AMD EPYC, AVX2, no VNNI) on the demo's
EfficientNet-Lite0 at 48 px, 1,000 footwear test images: fp32 0.901, reduce_range 0.839,
full range 0.885 (percentile calibration 0.891, entropy 0.839, per-tensor 0.672). So full
range; the accuracy change is measured and reported for every export anyway.
fp16 keeps float32 inputs and outputs so callers feed the same tensors.
"""

from __future__ import annotations

import logging
import platform
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from engine.store import atomic_write
from export import metadata

log = logging.getLogger(__name__)

VARIANTS = ("int8", "fp16")


def cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def int8_settings() -> dict:
    """Quantization settings for this machine's CPU, recorded with the variant."""
    arm = platform.machine().lower() in ("arm64", "aarch64")
    vnni = cpu_has_vnni()
    return {
        "format": "QDQ", "calibration": "MinMax", "per_channel": True,
        "activation_type": "QInt8" if arm else "QUInt8", "weight_type": "QInt8",
        "reduce_range": False, "cpu_vnni": vnni, "machine": platform.machine(),
    }


class _Reader(CalibrationDataReader):
    def __init__(self, batches: Iterable[np.ndarray]):
        self._it = iter(batches)

    def get_next(self):
        xb = next(self._it, None)
        return None if xb is None else {metadata.INPUT_NAME: xb}


def _copy_metadata(src: onnx.ModelProto, dst_path: str, extra: dict) -> None:
    proto = onnx.load(dst_path)
    props = {p.key: p.value for p in src.metadata_props}
    props.update(metadata.encode(extra))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, dst_path)


def quantize_int8(src: str | Path, dst: str | Path, calibration: Iterable[np.ndarray], n_images: int) -> dict:
    """Static int8 QDQ model at ``dst`` from the fp32 ``src``; returns the settings used."""
    settings = {**int8_settings(), "calibration_images": n_images}
    source = onnx.load(str(src))

    def write(tmp: str) -> None:
        with tempfile.TemporaryDirectory() as work:
            pre = str(Path(work) / "pre.onnx")
            quant_pre_process(str(src), pre)
            quantize_static(
                pre, tmp, _Reader(calibration), quant_format=QuantFormat.QDQ,
                activation_type=getattr(QuantType, settings["activation_type"]),
                weight_type=getattr(QuantType, settings["weight_type"]),
                per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                calibrate_method=CalibrationMethod.MinMax,
            )
        _copy_metadata(source, tmp, {"variant": "int8", "quantization": settings})

    atomic_write(dst, write)
    return settings


def convert_fp16(src: str | Path, dst: str | Path) -> dict:
    """fp16 weights and compute, float32 inputs/outputs (``keep_io_types``); returns the settings."""
    settings = {"keep_io_types": True, "converter": "onnxruntime.transformers.float16"}
    source = onnx.load(str(src))

    def write(tmp: str) -> None:
        converted = convert_float_to_float16(source, keep_io_types=True)
        onnx.save(converted, tmp)
        _copy_metadata(source, tmp, {"variant": "fp16"})

    atomic_write(dst, write)
    return settings
