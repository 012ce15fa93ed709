"""Logits of the PyTorch model and of an onnxruntime session over a test split, and their metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import onnxruntime as ort
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from engine.model_meta import ModelMeta
from engine.transforms import preprocess
from export import metadata

EVAL_BATCH = 256


def input_batches(x_uint8, meta: ModelMeta | Mapping, batch: int = EVAL_BATCH) -> Iterator[np.ndarray]:
    """Stored uint8 (N, C, H, W) -> float32 NCHW model inputs, ``batch`` at a time (engine.transforms.preprocess;
    the images are already stored, so the storage step is behind them)."""
    spec = ModelMeta.coerce(meta).preprocess
    x = torch.as_tensor(x_uint8)
    for start in range(0, len(x), batch):
        xb = preprocess(x[start:start + batch], spec.image_size, spec.mean, spec.std)
        yield np.ascontiguousarray(xb.numpy(), dtype=np.float32)


@torch.inference_mode()
def torch_logits(model: torch.nn.Module, batches, device: str = "cpu") -> np.ndarray:
    model.eval()
    out = [model(torch.from_numpy(xb).to(device)).float().cpu().numpy() for xb in batches]
    return np.concatenate(out)


@torch.inference_mode()
def torch_logits_fp64(model: torch.nn.Module, batches) -> np.ndarray:
    """A float64 reference on the CPU (the model is converted and back: float32 -> float64 is exact)."""
    model.eval().to("cpu", torch.float64)
    try:
        return np.concatenate([model(torch.from_numpy(xb).double()).numpy() for xb in batches])
    finally:
        model.to(torch.float32)


def ort_logits(session: ort.InferenceSession, batches) -> np.ndarray:
    return np.concatenate([session.run([metadata.OUTPUT_NAME], {metadata.INPUT_NAME: xb})[0].astype(np.float32)
                           for xb in batches])


def nhwc_batches(x_uint8, batch: int = EVAL_BATCH) -> Iterator[np.ndarray]:
    """Stored uint8 (N, C, H, W) -> uint8 (n, H, W, C) batches: what a decoder hands the embedded file."""
    x = np.asarray(x_uint8)
    for start in range(0, len(x), batch):
        yield np.ascontiguousarray(x[start:start + batch].transpose(0, 2, 3, 1), dtype=np.uint8)


def embedded_outputs(session: ort.InferenceSession, batches) -> tuple[np.ndarray, np.ndarray]:
    """The embedded-preprocessing file's (probabilities, class_index) over uint8 NHWC batches."""
    probs, index = [], []
    for xb in batches:
        p, i = session.run([metadata.PROBS_NAME, metadata.INDEX_NAME], {metadata.EMBEDDED_INPUT: xb})
        probs.append(p.astype(np.float32))
        index.append(i.astype(np.int64))
    return np.concatenate(probs), np.concatenate(index)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def both_logits(model: torch.nn.Module, session: ort.InferenceSession, x_uint8, meta: ModelMeta | Mapping,
                device: str = "cpu", progress: Callable[[int, int], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch and onnxruntime logits over the same preprocessed batches (one preprocessing pass)."""
    t_out, o_out, n, done = [], [], len(x_uint8), 0
    model.to(device)
    for xb in input_batches(x_uint8, meta):
        t_out.append(torch_logits(model, [xb], device))
        o_out.append(ort_logits(session, [xb]))
        done += len(xb)
        if progress:
            progress(done, n)
    return np.concatenate(t_out), np.concatenate(o_out)


def metrics(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """accuracy and macro F1, scikit-learn, same conventions as engine.metrics (zero_division=0)."""
    preds = logits.argmax(1)
    labels = np.asarray(labels)
    _, _, f1, _ = precision_recall_fscore_support(labels, preds, labels=list(range(n_classes)), average="macro",
                                                  zero_division=0)
    return {"accuracy": float(accuracy_score(labels, preds)), "f1_macro": float(f1)}
