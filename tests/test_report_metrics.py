"""The numbers behind the report's figures: calibration, confusion, errors, comparison tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from report import metrics as M
from report import tables
from report.reference import is_known_confusion, reference, reference_column


def _probs_with_confidence(conf: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Softmax rows whose top class is ``pred`` with probability ``conf``, the rest spread evenly."""
    rest = (1.0 - conf) / (n_classes - 1)
    probs = np.repeat(rest[:, None], n_classes, axis=1)
    probs[np.arange(len(conf)), pred] = conf
    return probs


def test_ece_of_a_perfectly_calibrated_case_is_zero():
    # in every bin, exactly a fraction `conf` of the predictions is right
    n_classes, per_bin = 4, 200
    confs, labels, preds = [], [], []
    for c in (0.35, 0.5, 0.65, 0.8, 0.95):
        n_right = int(round(c * per_bin))
        pred = np.zeros(per_bin, dtype=int)
        label = np.where(np.arange(per_bin) < n_right, 0, 1)
        confs.append(np.full(per_bin, c))
        preds.append(pred)
        labels.append(label)
    probs = _probs_with_confidence(np.concatenate(confs), np.concatenate(preds), n_classes)
    rel = M.reliability(probs, np.concatenate(labels))
    assert rel.ece == pytest.approx(0.0, abs=1e-9)
    assert rel.counts.sum() == 5 * per_bin


def test_ece_of_sampled_calibrated_predictions_is_small():
    rng = np.random.default_rng(0)
    n, k = 50_000, 3
    conf = rng.uniform(1 / k + 0.01, 1.0, n)
    pred = rng.integers(0, k, n)
    right = rng.random(n) < conf
    labels = np.where(right, pred, (pred + 1) % k)
    assert M.expected_calibration_error(_probs_with_confidence(conf, pred, k), labels) < 0.01


def test_ece_of_an_overconfident_model():
    # confidence 0.9 everywhere, 60% right: every prediction sits in one bin with gap 0.3
    n = 1000
    pred = np.zeros(n, dtype=int)
    labels = np.where(np.arange(n) < 600, 0, 1)
    rel = M.reliability(_probs_with_confidence(np.full(n, 0.9), pred, 3), labels)
    assert rel.ece == pytest.approx(0.3)
    assert rel.mce == pytest.approx(0.3)
    assert rel.counts[13] == n  # 0.9 is in (13/15, 14/15]
    assert np.isnan(rel.accuracy[0]) and rel.counts[0] == 0


def test_reliability_bins_are_right_closed_with_15_bins():
    conf = np.array([1 / 15, 1 / 15 + 1e-9, 0.5, 1.0])
    probs = _probs_with_confidence(conf, np.zeros(4, dtype=int), 20)  # 20 classes: 1/15 is a valid top prob
    rel = M.reliability(probs, np.zeros(4, dtype=int))
    assert len(rel.edges) == 16 and len(rel.counts) == 15
    assert list(np.flatnonzero(rel.counts)) == [0, 1, 7, 14]  # (0, 1/15], (1/15, 2/15], (7/15, 8/15], (14/15, 1]


def test_row_normalised_confusion_rows_sum_to_one():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 500)
    preds = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 4, 500))
    cm = M.row_normalised_confusion(labels, preds, 5)  # class 4 never occurs
    assert cm.shape == (5, 5)
    np.testing.assert_allclose(cm[:4].sum(axis=1), 1.0)
    assert cm[4].sum() == 0
    counts = M.confusion_counts(labels, preds, 5)
    np.testing.assert_allclose(M.normalise_counts(counts), cm)
    assert cm[0, 0] == pytest.approx(np.mean(preds[labels == 0] == 0))


def test_top_errors_are_the_highest_confidence_wrong_predictions():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(300, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 5, 300)
    top = M.top_errors(probs, labels, 20)
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = [i for i in range(300) if pred[i] != labels[i]]
    expected = sorted(wrong, key=lambda i: -conf[i])[:20]
    assert list(top["position"]) == expected
    assert (top["true"] != top["pred"]).all()
    assert np.all(np.diff(top["confidence"]) <= 0)
    assert top["confidence"].min() >= max(conf[i] for i in wrong if i not in expected)
    # and it is what the engine writes into results.json
    from engine.metrics import top_errors as engine_top_errors

    assert [e[0] for e in engine_top_errors(probs, labels, 20)] == expected


def test_top_errors_with_fewer_than_k_errors():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    top = M.top_errors(probs, np.array([0, 1, 1]), 20)
    assert list(top["position"]) == [2]


def test_confident_correct_spreads_over_classes():
    probs = np.array([[0.99, 0.01], [0.98, 0.02], [0.97, 0.03], [0.2, 0.8], [0.4, 0.6]])
    labels = np.array([0, 0, 0, 1, 1])
    picked = M.confident_correct(probs, labels, 3)
    assert list(picked["position"]) == [0, 3, 1]
    assert (picked["true"] == picked["pred"]).all()


def test_confused_pairs_counts_both_directions():
    classes = ["sandal", "sneaker", "ankle boot"]
    counts = np.array([[90, 8, 2],
                       [1, 80, 19],
                       [0, 30, 70]])
    pairs = M.confused_pairs(counts, classes)
    first = pairs.iloc[0]
    assert (first["class_a"], first["class_b"]) == ("sneaker", "ankle boot")
    assert (first["a_as_b"], first["b_as_a"], first["errors"]) == (19, 30, 49)
    assert first["pair_error_rate"] == pytest.approx(49 / 200)
    assert first["share_of_errors"] == pytest.approx(49 / 60)
    assert list(pairs["errors"]) == [49, 9, 2]
    assert pairs["share_of_errors"].sum() == pytest.approx(1.0)
    assert M.confused_pairs(np.diag([5, 5]), ["a", "b"]).empty


def test_reference_mapping():
    assert reference_column("vgg16") == "VGG16"
    assert reference_column("efficientnet_b0") == "EfficientNetB0"
    assert reference("transport", "resnet50") == (0.91, 0.90)
    assert reference("people", "mobilenetv2") == (0.45, 0.42)
    assert reference("footwear", "efficientnet_lite0") is None
    assert reference("cifar10", "vgg16") is None
    assert is_known_confusion("footwear", "ankle boot", "sneaker")
    assert not is_known_confusion("footwear", "sandal", "sneaker")


def _table(rows):
    base = {c: np.nan for c in tables.RUN_COLUMNS}
    return pd.DataFrame([{**base, **r} for r in rows], columns=tables.RUN_COLUMNS)


def test_select_best_uses_validation_not_test():
    t = _table([
        dict(dataset="transport", backbone="vgg16", strategy="frozen", status="done", run_id="a",
             val_acc=0.80, val_loss=0.5, accuracy=0.95, f1_macro=0.94),
        dict(dataset="transport", backbone="vgg16", strategy="full", status="done", run_id="b",
             val_acc=0.85, val_loss=0.4, accuracy=0.88, f1_macro=0.87),
        dict(dataset="transport", backbone="vgg16", strategy="partial", status="failed", run_id="c",
             val_acc=0.99, val_loss=0.1),
        dict(dataset="transport", backbone="resnet50", strategy="full", status="done", run_id="d",
             val_acc=0.9, val_loss=0.3, accuracy=0.92, f1_macro=0.91, image_size=32),
    ])
    best = tables.select_best(t)
    assert dict(zip(best["backbone"], best["strategy"])) == {"vgg16": "full", "resnet50": "full"}
    acc = tables.comparison(best, "accuracy", ["transport", "animals"], ["vgg16", "resnet50", "mobilenetv2"])
    assert acc.loc["transport", "vgg16"] == pytest.approx(0.88)
    assert np.isnan(acc.loc["animals", "vgg16"]) and np.isnan(acc.loc["transport", "mobilenetv2"])
    deltas = tables.reference_deltas(best).set_index("backbone")
    assert deltas.loc["vgg16", "accuracy_delta"] == pytest.approx(0.88 - 0.87)
    assert deltas.loc["resnet50", "f1_delta"] == pytest.approx(0.91 - 0.90)


def test_benchmark_sorts_by_accuracy_and_keeps_failed_runs():
    t = _table([
        dict(dataset="footwear", backbone="x", strategy="frozen", status="done", accuracy=0.8),
        dict(dataset="footwear", backbone="x", strategy="full", status="failed", error="boom"),
        dict(dataset="footwear", backbone="x", strategy="partial", status="done", accuracy=0.9),
        dict(dataset="people", backbone="x", strategy="full", status="done", accuracy=0.5),
    ])
    b = tables.benchmark(t, "footwear")
    assert list(b["strategy"]) == ["partial", "frozen", "full"]
    assert b.iloc[2]["error"] == "boom"
    assert "dataset" not in b.columns


def test_latency_summary_reads_the_export_contract():
    export = {"status": "ok", "onnx_accuracy": 0.9, "size_mb": 3.2,
              "latency": {"CPUExecutionProvider": {"1": {"p50_ms": 2.5, "img_per_s": 400},
                                                   "32": {"p50_ms": 20.0, "img_per_s": 1600}}}}
    s = tables.latency_summary(export)
    assert s["onnx_provider"] == "CPUExecutionProvider"
    assert s["onnx_p50_ms_batch1"] == 2.5 and s["onnx_img_per_s"] == 1600
    assert np.isnan(tables.latency_summary(None)["onnx_p50_ms_batch1"])
