"""What an exported ONNX file carries so it can be deployed on its own.

ONNX ``metadata_props`` are string pairs; values that are not strings are
stored as JSON. Nothing here imports torch or onnx: ``predict`` reads the
same keys through onnxruntime's ``custom_metadata_map``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

FORMAT = "finetune-tui-onnx/1"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# Copied from the checkpoint's metadata (docs/CONTRACTS.md), all required for deployment.
FROM_CHECKPOINT = (
    "backbone", "head", "num_classes", "classes", "image_size", "mean", "std", "interpolation",
    "channels", "in_chans_source", "run_id", "dataset", "epoch", "val_loss",
)
# Needed by ``predict``; a file without them is not one of ours.
REQUIRED = ("format", "classes", "image_size", "mean", "std", "channels", "in_chans_source")

# How an image becomes the input tensor: engine.transforms.preprocess, in words.
PREPROCESS = (
    "uint8 image; grey data (in_chans_source 1) is converted to grey and repeated to 3 channels; "
    "/255; resize to image_size x image_size, bilinear, half-pixel centres (align_corners=False), "
    "antialiased when the width shrinks; (x - mean) / std per channel; NCHW float32; "
    "output: logits (softmax for probabilities)"
)


class MetadataError(ValueError):
    """An ONNX file lacks the metadata deployment needs."""


def encode(meta: Mapping[str, Any]) -> dict[str, str]:
    """Values that are not strings become JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def decode(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of ``encode``: JSON values decoded, plain strings kept."""
    out: dict[str, Any] = {}
    for k, v in props.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def build(checkpoint_meta: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The ONNX file's metadata from the checkpoint's, plus export details (source, opset, ...)."""
    missing = [k for k in FROM_CHECKPOINT if k not in checkpoint_meta]
    if missing:
        raise MetadataError(f"checkpoint metadata lacks {', '.join(missing)}")
    meta = {"format": FORMAT, **{k: checkpoint_meta[k] for k in FROM_CHECKPOINT},
            "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "layout": "NCHW", "dtype": "float32",
            "preprocess": PREPROCESS}
    meta.update(extra)
    return meta


def validate(meta: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check the keys ``predict`` relies on; the error names the file and what is missing."""
    if meta.get("format") != FORMAT:
        raise MetadataError(f"{where} is not a finetune-tui ONNX export (metadata format {meta.get('format')!r})")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise MetadataError(f"{where} lacks metadata {', '.join(missing)}")
    if len(meta["mean"]) != 3 or len(meta["std"]) != 3:
        raise MetadataError(f"{where}: mean/std must have 3 values, got {meta['mean']} / {meta['std']}")
    return dict(meta)
