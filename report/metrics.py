"""The numbers behind the figures: calibration, confusion, errors. No drawing here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

ECE_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Top-label reliability over equal-width confidence bins.

    Bin ``m`` holds predictions with confidence in ``(edges[m], edges[m+1]]``
    (the first bin also takes confidence 0). Empty bins have ``nan`` accuracy
    and confidence and a count of 0.
    """

    edges: np.ndarray  # (M+1,)
    counts: np.ndarray  # (M,) predictions per bin
    accuracy: np.ndarray  # (M,) fraction correct per bin
    confidence: np.ndarray  # (M,) mean confidence per bin
    ece: float  # sum over bins of count/N * |accuracy - confidence|
    mce: float  # max over non-empty bins of |accuracy - confidence|
    mean_confidence: float
    accuracy_overall: float


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> Reliability:
    """Reliability bins and expected calibration error of softmax ``probs`` (N, C) against ``labels``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"probs must be (N, C) and labels (N,) with N > 0; got {probs.shape} and {labels.shape}")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins: (e_m, e_{m+1}]; confidence exactly 0 goes to the first
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / counts
    gaps = np.abs(acc - mean_conf)
    filled = counts > 0
    ece = float(np.sum(counts[filled] / len(labels) * gaps[filled]))
    mce = float(gaps[filled].max()) if filled.any() else 0.0
    return Reliability(edges, counts, acc, mean_conf, ece, mce, float(conf.mean()), float(correct.mean()))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    return reliability(probs, labels, n_bins).ece


def row_normalised_confusion(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, each row divided by its support (rows of absent classes stay 0)."""
    return confusion_matrix(labels, preds, labels=np.arange(n_classes), normalize="true")


def normalise_counts(counts: np.ndarray) -> np.ndarray:
    """Row-normalise a confusion matrix of raw counts (for runs without test probabilities)."""
    counts = np.asarray(counts, dtype=np.float64)
    support = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)


def top_errors(probs: np.ndarray, labels: np.ndarray, k: int = 20) -> pd.DataFrame:
    """The ``k`` wrong predictions with the highest confidence, highest first.

    Columns: ``position`` (row in the test split), ``true``, ``pred``, ``confidence``
    (the probability given to the wrong class). Ties keep test-split order.
    """
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    wrong = np.flatnonzero(pred != np.asarray(labels))
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    return pd.DataFrame({"position": order, "true": np.asarray(labels)[order], "pred": pred[order],
                         "confidence": conf[order]})


def confident_correct(probs: np.ndarray, labels: np.ndarray, k: int = 4) -> pd.DataFrame:
    """Up to ``k`` correct predictions, the most confident of each class in turn (spread over classes)."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    per_class = []
    for c in np.unique(labels):
        rows = np.flatnonzero((labels == c) & (pred == c))
        per_class.append(list(rows[np.argsort(-conf[rows], kind="stable")]))
    picked: list[int] = []
    depth = 0
    while len(picked) < k and any(depth < len(rows) for rows in per_class):
        picked += [rows[depth] for rows in per_class if depth < len(rows)][: k - len(picked)]
        depth += 1
    picked_arr = np.array(picked, dtype=np.int64)
    return pd.DataFrame({"position": picked_arr, "true": labels[picked_arr], "pred": pred[picked_arr],
                         "confidence": conf[picked_arr]})


def confused_pairs(counts: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Unordered class pairs ranked by how often either is taken for the other.

    ``counts`` is a raw confusion matrix (rows true, columns predicted), possibly
    summed over several models of the same test set. Columns: ``class_a``,
    ``class_b``, ``a_as_b``, ``b_as_a``, ``errors`` (both directions),
    ``pair_error_rate`` (errors / test images of the two classes) and
    ``share_of_errors`` (errors / all errors). Pairs never confused are left out.
    """
    counts = np.asarray(counts, dtype=np.int64)
    support = counts.sum(axis=1)
    total_errors = int(counts.sum() - np.trace(counts))
    rows = []
    n = len(classes)
    for a in range(n):
        for b in range(a + 1, n):
            errors = int(counts[a, b] + counts[b, a])
            if errors == 0:
                continue
            pair_support = int(support[a] + support[b])
            rows.append({"class_a": classes[a], "class_b": classes[b], "a_as_b": int(counts[a, b]),
                         "b_as_a": int(counts[b, a]), "errors": errors,
                         "pair_error_rate": errors / pair_support if pair_support else float("nan"),
                         "share_of_errors": errors / total_errors if total_errors else float("nan")})
    df = pd.DataFrame(rows, columns=["class_a", "class_b", "a_as_b", "b_as_a", "errors", "pair_error_rate",
                                     "share_of_errors"])
    return df.sort_values(["errors", "class_a", "class_b"], ascending=[False, True, True]).reset_index(drop=True)


def confusion_counts(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    return confusion_matrix(labels, preds, labels=np.arange(n_classes))
