"""Classify images with an exported model and nothing else: onnxruntime, numpy, Pillow.

No torch, no timm: this module is the proof that an exported ONNX model deploys on
its own. The only engine code it uses is torch-free: the metadata type
(``engine.model_meta``) and the preprocessing definition with its numpy/Pillow
twin (``engine.preprocess``), the same functions the image-folder decoder
uses at training time. From the file's metadata:

- storage: a model trained on an image folder gets each file as training
  stored it (EXIF orientation, RGB, bicubic centre crop to the storage size);
  a model trained on array data gets the file as given (grey for grey data);
- input: /255, resize to ``image_size`` (bilinear, antialiased when a side
  shrinks), (x - mean) / std, NCHW float32; tests/test_preprocess.py pins it
  to ``engine.transforms.preprocess`` within 1e-5.

A file exported with its preprocessing in the graph (``model.preprocess.onnx``, metadata
layout "NHWC") is given the decoded pixels instead (uint8, any size; EXIF orientation applied
first when the model was trained on an image folder), and onnxruntime does the rest: that is
the path a client in another language follows. Given a run or export folder, ``predict``
uses that file, or the plain ``model.onnx`` of an older export.

Run: ``finetune-tui predict MODEL IMAGE... [--top-k 3] [--json]`` or
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

from engine.errors import UserError
from engine.model_meta import ONNX, ModelMeta, ModelMetaError
from engine.preprocess import Preprocess, image_input, input_array
from export import metadata
from export.ort_session import SessionInfo, open_session

BATCH = 32


class PredictError(UserError):
    """A user error: missing/unreadable model or image; the message is one line."""


@dataclass
class Deployed:
    info: SessionInfo
    meta: ModelMeta
    path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def spec(self) -> Preprocess:
        return self.meta.preprocess

    @property
    def embedded(self) -> bool:
        """The file preprocesses uint8 images itself (``export.embed``)."""
        return metadata.is_embedded(self.meta)


def model_file(path: str | Path) -> Path:
    """An .onnx file as given; a run folder or its export folder: the deployable file, else ``model.onnx``."""
    from engine.store import ExportDir, RunDir

    path = Path(path)
    if path.is_dir():
        export = RunDir(path).export if RunDir(path).is_run() or (path / "export").is_dir() else ExportDir(path)
        for candidate in (export.embedded, export.model):
            if candidate.is_file():
                return candidate
        raise PredictError(f"{path} holds no exported model (run `finetune-tui export` on it first)")
    return path


def load_model(path: str | Path, provider: str = "cpu", threads: int | None = None) -> Deployed:
    path = model_file(path)
    if not path.is_file():
        raise PredictError(f"model file {path} not found")
    try:
        info = open_session(path, provider, threads=threads)
    except Exception as exc:  # onnxruntime raises its own (Fail, InvalidProtobuf, ...) types
        # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from PATH failed:Protobuf parsing failed."
        why = (str(exc).splitlines() or [type(exc).__name__])[0].split(" : ")[-1].split(" failed:")[-1].strip()[:200]
        raise PredictError(f"{path} can't be loaded by onnxruntime ({why}): a cut-short copy or not an ONNX file? "
                           "Export it again (`finetune-tui export GRID`) or give the file export wrote") from None
    props = info.session.get_modelmeta().custom_metadata_map
    try:
        meta = ModelMeta.from_strings(props, str(path), ONNX)
    except ModelMetaError as exc:
        raise PredictError(str(exc)) from None
    return Deployed(info, meta, path)


# --- preprocessing ------------------------------------------------------------


def image_array(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """A decoded image file -> the model's input (3, S, S) float32 (``Deployed.spec``)."""
    return image_input(image, spec)


def uint8_array(x: np.ndarray, spec: Preprocess) -> np.ndarray:
    """An already stored uint8 (C, H, W) image (as the engine holds it) -> the model's input."""
    return input_array(np.asarray(x, dtype=np.uint8), spec)


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


def client_pixels(image: Image.Image, spec: Preprocess) -> np.ndarray:
    """What a client hands the embedded file: the decoded uint8 (H, W, C) pixels, C 1, 3 or 4,
    EXIF orientation applied when the model's storage step asks for it (it can't be in a graph)."""
    from PIL import ImageOps

    if spec.storage is not None and spec.storage.exif:
        image = ImageOps.exif_transpose(image)
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("L" if spec.grey else "RGB")
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def embedded_probabilities(model: Deployed, pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) -> (C,) probabilities from the embedded file's own preprocessing and softmax."""
    probs = model.info.session.run([metadata.PROBS_NAME], {metadata.EMBEDDED_INPUT: pixels[None]})[0]
    return probs[0].astype(np.float64)


def classify(model: Deployed, paths: list[str], k: int = 3) -> list[dict]:
    """Per image: ``{"image": path, "top": [{"class", "index", "prob"}, ...]}``, most likely first."""
    if model.embedded:  # images of any size, one at a time: the graph resizes each
        probs = np.stack([embedded_probabilities(model, client_pixels(load_image(p), model.spec)) for p in paths])
    else:
        probs = probabilities(model, np.stack([image_array(load_image(p), model.spec) for p in paths]))
    tops = top_k(probs, model.classes, k)
    return [{"image": str(p), "top": t} for p, t in zip(paths, tops)]


# --- command line ---------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an exported ONNX model (what finetune-tui export writes), or a run or "
                                      "export folder (its model.preprocess.onnx, else model.onnx)")
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
        json.dump({"model": str(model.path), "provider": model.info.actual, "run_id": model.meta.run_id,
                   "preprocessing": "in the graph" if model.embedded else "numpy/Pillow (engine.preprocess)",
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
