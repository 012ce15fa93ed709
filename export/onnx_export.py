"""PyTorch classifier -> ONNX file with a dynamic batch axis, deployment metadata, checked."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import torch

from engine.model_meta import ONNX, ModelMeta
from engine.store import atomic_write
from export import metadata

log = logging.getLogger(__name__)

OPSET = 17
DYNAMIC_AXES = {metadata.INPUT_NAME: {0: "batch"}, metadata.OUTPUT_NAME: {0: "batch"}}


class ExportFailed(RuntimeError):
    """torch.onnx.export or onnx.checker rejected the model."""


def export_onnx(model: torch.nn.Module, path: str | Path, meta: ModelMeta | Mapping[str, Any], *,
                opset: int = OPSET, trace_batch: int = 2) -> Path:
    """Trace ``model`` (eval, CPU, fp32) and write ``path`` atomically with ``meta`` as metadata_props.

    ``meta``: ``export.metadata.build``'s result (or a ModelMeta). The TorchScript exporter
    (``dynamo=False``) is used: the dynamo one needs onnxscript and gains nothing for these CNNs.
    A trace batch of 2 keeps the batch axis symbolic (a batch of 1 can get constant-folded into
    reshapes).
    """
    path = Path(path)
    meta = ModelMeta.coerce(meta, f"metadata for {path}").with_extra(opset=opset)
    size = meta.image_size
    model = model.eval().to("cpu", torch.float32)
    example = torch.zeros(trace_batch, 3, size, size)

    def write(tmp: str) -> None:
        try:
            with warnings.catch_warnings():
                # the legacy-exporter deprecation notice is expected: FACTS.md, dynamo needs onnxscript
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
                with torch.no_grad():
                    torch.onnx.export(
                        model, (example,), tmp, dynamo=False, opset_version=opset,
                        input_names=[metadata.INPUT_NAME], output_names=[metadata.OUTPUT_NAME],
                        dynamic_axes=DYNAMIC_AXES, do_constant_folding=True,
                    )
        except Exception as exc:
            raise ExportFailed(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
        proto = onnx.load(tmp)
        onnx.helper.set_model_props(proto, meta.to_strings(ONNX))
        proto.doc_string = f"finetune-tui export of {meta.run_id or '?'} ({meta.backbone})"
        onnx.save(proto, tmp)
        check(tmp)

    atomic_write(path, write)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def check(path: str | Path) -> None:
    """onnx.checker with full shape inference; raises ExportFailed with the checker's message."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportFailed(f"onnx.checker rejected {Path(path).name}: {str(exc)[:300]}") from exc


def read_model_meta(path: str | Path) -> ModelMeta:
    """The file's metadata_props as a ModelMeta (onnx; ``predict`` reads them through onnxruntime)."""
    proto = onnx.load(str(path), load_external_data=False)
    return ModelMeta.from_strings({p.key: p.value for p in proto.metadata_props}, str(path), ONNX)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """``read_model_meta`` as plain values (``ModelMeta.to_dict``)."""
    return read_model_meta(path).to_dict(ONNX)


def io_shapes(path: str | Path) -> dict[str, list]:
    """Input/output dims as strings or ints (``batch`` for the dynamic axis)."""
    proto = onnx.load(str(path), load_external_data=False)

    def dims(value_info) -> list:
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    return {v.name: dims(v) for v in list(proto.graph.input) + list(proto.graph.output)}
