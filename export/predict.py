"""Classify images with an exported model and nothing else: onnxruntime, numpy, Pillow.

No torch, no timm, no engine code: this module is the proof that ``model.onnx``
deploys on its own. Preprocessing comes from the file's metadata and reproduces
``engine.transforms.preprocess`` (measured: max |difference| below 1e-6 on the
normalised input for up- and down-scaling, see tests/test_predict.py):

- grey data models (``in_chans_source`` 1) take the image as grey (``L``) and
  repeat it to 3 channels; others take it as RGB;
- /255, then resize to ``image_size`` square: bilinear with half-pixel centres,
  antialiased when shrinking, done by Pillow on float32 (mode ``F``) images.
  Pillow on uint8 images would round the resized values to 1/255 (measured
  1.7e-2 max error after normalisation); on float32 it matches torch's
  ``F.interpolate(..., antialias=True)``, whose algorithm is Pillow's;
- the engine antialiases only when the *width* shrinks; for an image narrower
  than ``image_size`` but taller, plain bilinear (no antialias) is reproduced
  in numpy;
- (x - mean) / std, NCHW float32.

Run: ``finetune-tui predict MODEL.onnx IMAGE... [--top-k 3] [--json]`` or
``python -m export.predict ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from export import metadata
from export.ort_session import SessionInfo, open_session

BATCH = 32


class PredictError(Exception):
    """A user error: missing/unreadable model or image; the message is one line."""


@dataclass
class Deployed:
    info: SessionInfo
    meta: dict
    path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])


def load_model(path: str | Path, provider: str = "cpu", threads: int | None = None) -> Deployed:
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"model file {path} not found")
    try:
        info = open_session(path, provider, threads=threads)
    except Exception as exc:  # onnxruntime raises its own (Fail, InvalidProtobuf, ...) types
        raise PredictError(f"{path} can't be loaded by onnxruntime: {str(exc).splitlines()[0][:200]}") from None
    props = info.session.get_modelmeta().custom_metadata_map
    try:
        meta = metadata.validate(metadata.decode(props), str(path))
    except metadata.MetadataError as exc:
        raise PredictError(str(exc)) from None
    return Deployed(info, meta, path)


# --- preprocessing ------------------------------------------------------------


def _bilinear_axis(a: np.ndarray, out: int, axis: int) -> np.ndarray:
    """Plain bilinear along ``axis``, half-pixel centres, edge-clamped (torch, antialias=False)."""
    n = a.shape[axis]
    scale = n / out
    src = np.maximum((np.arange(out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w1 = (src - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = out
    w1 = w1.reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w1) + np.take(a, i1, axis=axis) * w1


def _resize(channel: np.ndarray, size: int) -> np.ndarray:
    """float32 (H, W) in [0, 1] -> (size, size) the way engine.transforms.preprocess resizes."""
    h, w = channel.shape
    if (h, w) == (size, size):
        return channel
    if w <= size < h:  # the engine doesn't antialias here (it looks at the width only)
        return _bilinear_axis(_bilinear_axis(channel, size, 0), size, 1).astype(np.float32)
    image = Image.fromarray(channel)  # float32: mode F, resized in floating point
    resized = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def image_array(image: Image.Image, meta: dict) -> np.ndarray:
    """A PIL image -> the model's input (3, S, S) float32, from the model's metadata."""
    grey = int(meta.get("in_chans_source", 3)) == 1
    image = image.convert("L" if grey else "RGB")
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    channels = [pixels] if grey else [pixels[..., c] for c in range(3)]
    size = int(meta["image_size"])
    resized = [_resize(np.ascontiguousarray(c), size) for c in channels]
    x = np.stack(resized * 3 if grey else resized)
    mean = np.asarray(meta["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(meta["std"], dtype=np.float32).reshape(3, 1, 1)
    return ((x - mean) / std).astype(np.float32)


def uint8_array(x: np.ndarray, meta: dict) -> np.ndarray:
    """An engine-style uint8 (C, H, W) image -> the model's input, through the same path as files."""
    x = np.asarray(x, dtype=np.uint8)
    image = Image.fromarray(x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1))
    return image_array(image, meta)


def load_image(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.copy()  # loaded, independent of the closed file
    except FileNotFoundError:
        raise PredictError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PredictError(f"image {path} can't be read ({type(exc).__name__}: {exc})") from None


# --- inference ----------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities(model: Deployed, inputs: np.ndarray) -> np.ndarray:
    """(N, 3, S, S) float32 -> (N, C) softmax probabilities, BATCH at a time."""
    out = []
    for start in range(0, len(inputs), BATCH):
        xb = np.ascontiguousarray(inputs[start:start + BATCH], dtype=np.float32)
        out.append(model.info.session.run([metadata.OUTPUT_NAME], {metadata.INPUT_NAME: xb})[0])
    return softmax(np.concatenate(out).astype(np.float64))


def top_k(probs: np.ndarray, classes: list[str], k: int) -> list[list[dict]]:
    k = max(1, min(k, len(classes)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"class": classes[i], "index": int(i), "prob": float(p[i])} for i in row] for p, row in zip(probs, order)]


def classify(model: Deployed, paths: list[str], k: int = 3) -> list[dict]:
    """Per image: ``{"image": path, "top": [{"class", "index", "prob"}, ...]}``, most likely first."""
    inputs = np.stack([image_array(load_image(p), model.meta) for p in paths])
    tops = top_k(probabilities(model, inputs), model.classes, k)
    return [{"image": str(p), "top": t} for p, t in zip(paths, tops)]


# --- command line ---------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an exported model.onnx (finetune-tui export)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    parser.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "trt"),
                        help="onnxruntime execution provider (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available)")


def run(args: argparse.Namespace) -> int:
    """Handler for ``finetune-tui predict``; user errors -> one line on stderr, exit 2."""
    try:
        if args.top_k < 1:
            raise PredictError(f"--top-k must be at least 1, got {args.top_k}")
        model = load_model(args.model, args.provider, args.threads)
        if model.info.fell_back:
            print(f"finetune-tui: warning: {model.info.error}", file=sys.stderr)
        results = classify(model, list(args.images), args.top_k)
    except PredictError as exc:
        print(f"finetune-tui: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump({"model": str(model.path), "provider": model.info.actual, "run_id": model.meta.get("run_id", ""),
                   "predictions": results}, sys.stdout, indent=1)
        print()
    else:
        for r in results:
            tops = "  ".join(f"{t['class']} {t['prob']:.3f}" for t in r["top"])
            print(f"{r['image']}: {tops}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finetune-tui predict", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
