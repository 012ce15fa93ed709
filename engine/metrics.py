"""Test-set metrics from probabilities, through scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support

TOP_ERRORS = 20


def top_errors(probs: np.ndarray, labels: np.ndarray, k: int = TOP_ERRORS) -> list[tuple[int, int, int, float]]:
    """The ``k`` wrong predictions with the highest confidence: (position, true, pred, confidence)."""
    preds = probs.argmax(1)
    conf = probs.max(1)
    wrong = np.flatnonzero(preds != labels)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    return [(int(i), int(labels[i]), int(preds[i]), float(conf[i])) for i in order]


def test_results(probs: np.ndarray, labels: np.ndarray, classes: list[str], source_index: np.ndarray) -> dict:
    preds = probs.argmax(1)
    ids = list(range(len(classes)))
    out: dict = {"classes": classes, "n_test": int(len(labels)), "accuracy": float(accuracy_score(labels, preds))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=ids, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    report = classification_report(labels, preds, labels=ids, target_names=classes, output_dict=True, zero_division=0)
    out["per_class"] = {c: {k: float(v) for k, v in report[c].items()} for c in classes}
    out["confusion_matrix"] = confusion_matrix(labels, preds, labels=ids).tolist()
    out["top_errors"] = [
        {"index": i, "source_index": int(source_index[i]), "true": t, "pred": p, "true_name": classes[t],
         "pred_name": classes[p], "confidence": c}
        for i, t, p, c in top_errors(probs, labels)
    ]
    return out
