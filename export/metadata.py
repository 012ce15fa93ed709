"""What an exported ONNX file carries so it can be deployed on its own.

The metadata is the checkpoint's ``engine.model_meta.ModelMeta`` (format
"finetune-tui-onnx/2") plus export details (input/output names, layout, the
preprocessing in words, opset, source run, ...), stored as ``metadata_props``
string pairs by ``ModelMeta.to_strings``. Nothing here imports torch or onnx:
``predict`` reads the same keys through onnxruntime's ``custom_metadata_map``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.model_meta import FIELDS, FORMATS, ONNX, ModelMeta, ModelMetaError, decode_strings, encode_strings

FORMAT = FORMATS[ONNX]
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# the file with its preprocessing in the graph (export.embed): uint8 images in, probabilities out
EMBEDDED_INPUT = "image"
PROBS_NAME = "probabilities"
INDEX_NAME = "class_index"
EMBEDDED_LAYOUT, PLAIN_LAYOUT = "NHWC", "NCHW"

# Copied from the checkpoint's metadata (docs/CONTRACTS.md), all required for deployment.
FROM_CHECKPOINT = FIELDS

MetadataError = ModelMetaError  # an ONNX file lacks the metadata deployment needs
encode = encode_strings
decode = decode_strings


def build(checkpoint_meta: ModelMeta | Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The ONNX file's metadata from the checkpoint's, plus export details (source, opset, ...)."""
    meta = ModelMeta.coerce(checkpoint_meta, "checkpoint metadata")
    meta = meta.with_extra(input_name=INPUT_NAME, output_name=OUTPUT_NAME, layout=PLAIN_LAYOUT, dtype="float32",
                           preprocess=meta.preprocess.describe(), **extra)
    return meta.to_dict(ONNX)


def build_embedded(onnx_meta: ModelMeta | Mapping[str, Any], opset: int, **extra: Any) -> dict[str, Any]:
    """The embedded-preprocessing file's metadata: the plain file's, with its input and outputs described."""
    from export.preprocess_graph import describe  # onnx, only where a file is written

    meta = ModelMeta.coerce(onnx_meta, "ONNX metadata")
    if meta.storage is not None:
        import PIL

        from export.preprocess_graph import pillow_order

        extra.setdefault("storage_resampler", f"Pillow {PIL.__version__} ({pillow_order()})")
    meta = meta.with_extra(input_name=EMBEDDED_INPUT, output_name=PROBS_NAME, index_name=INDEX_NAME,
                           layout=EMBEDDED_LAYOUT, dtype="uint8", preprocess_in_graph=True,
                           exif_by_client=bool(meta.storage is not None and meta.storage.exif),
                           preprocess=describe(meta.preprocess), opset=opset, **extra)
    return meta.to_dict(ONNX)


def is_embedded(meta: ModelMeta) -> bool:
    """The file takes uint8 NHWC images and preprocesses them itself (``build_embedded``)."""
    return meta.extra.get("layout") == EMBEDDED_LAYOUT

