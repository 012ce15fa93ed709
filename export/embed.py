"""The deployable ONNX file: preprocessing, network and softmax in one graph.

``embed_preprocessing(plain, dst, meta)`` takes the exported network (``ExportDir.model``,
float32 NCHW in, logits out), lifts it to opset 18 (``onnx.version_converter``), puts the
preprocessing graph of ``export.preprocess_graph`` in front of it (``onnx.compose``) and a
softmax and an argmax behind it. The result takes uint8 images (batch, height, width,
channels) of any size, as a decoder gives them, and outputs ``probabilities`` and
``class_index``; a C#, Java or JavaScript client needs an image decoder and onnxruntime,
nothing else. Its metadata is the same ``ModelMeta`` as the plain file's, with the input
described as uint8 NHWC (``export.metadata.build_embedded``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, compose, helper, version_converter

from engine.model_meta import ONNX, ModelMeta
from engine.store import atomic_write
from export import metadata
from export.onnx_export import ExportFailed, check
from export.preprocess_graph import OPSET, preprocess_graph

PIXELS = "preprocess/pixels"  # the preprocessing graph's output = the network's input


def embed_preprocessing(plain: str | Path, dst: str | Path, meta: ModelMeta | Mapping[str, Any]) -> Path:
    """Write ``dst``: ``plain``'s network with its preprocessing and softmax in the graph (checked)."""
    dst = Path(dst)
    meta = ModelMeta.coerce(meta, f"metadata for {dst}")
    network = onnx.load(str(plain))
    try:
        if _opset(network) < OPSET:
            network = version_converter.convert_version(network, OPSET)
        pre = preprocess_graph(meta.preprocess, PIXELS, ir_version=network.ir_version, opset=_opset(network))
        merged = compose.merge_models(pre, network, io_map=[(PIXELS, metadata.INPUT_NAME)],
                                      producer_name="finetune-tui", producer_version=network.producer_version)
    except Exception as exc:  # converter or compose refusing this graph
        raise ExportFailed(f"embedding the preprocessing failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    _add_outputs(merged.graph, meta.num_classes)
    del merged.metadata_props[:]
    helper.set_model_props(merged, meta.to_strings(ONNX))
    merged.doc_string = (f"finetune-tui export of {meta.run_id or '?'} ({meta.backbone}) with its preprocessing: "
                         f"uint8 images in, probabilities out")

    def write(tmp: str) -> None:
        onnx.save(merged, tmp)
        check(tmp)

    atomic_write(dst, write)
    return dst


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _add_outputs(graph: onnx.GraphProto, num_classes: int) -> None:
    """logits -> softmax ``probabilities`` (batch, classes) and argmax ``class_index`` (batch,)."""
    graph.node.append(helper.make_node("Softmax", [metadata.OUTPUT_NAME], [metadata.PROBS_NAME], axis=1,
                                       name="postprocess/Softmax"))
    graph.node.append(helper.make_node("ArgMax", [metadata.OUTPUT_NAME], [metadata.INDEX_NAME], axis=1, keepdims=0,
                                       name="postprocess/ArgMax"))
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(metadata.PROBS_NAME, TensorProto.FLOAT, ["batch", num_classes]),
        helper.make_tensor_value_info(metadata.INDEX_NAME, TensorProto.INT64, ["batch"]),
    ])
