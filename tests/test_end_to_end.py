"""train -> export -> report on a real store, as a user runs it.

A tiny grid (digits x test_efficientnet x frozen/full, 2 epochs, one thread)
is trained by the real orchestrator and its worker subprocesses through
``finetune-tui run``; then ``finetune-tui export --select best-per-dataset``
and ``finetune-tui report`` run on that store. The checks are on values: what
the exports table and the report say must be what training stored, and the
run they pick must be the one the store's rule (``BEST_RULE``) picks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from engine.store import BEST_RULE, GridDir, RunStore, selection_key

ROOT = Path(__file__).resolve().parents[1]
GRID = "e2e"


def _cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *map(str, argv)], capture_output=True,
                          text=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    proc = _cli("run", "--runs", root, "--name", GRID, "--datasets", "digits", "--backbones", "test_efficientnet",
                "--strategies", "frozen,full", "--epochs", "2", "--image-size", "32", "--weights", "random",
                "--head", "linear", "--plain", "--set", "train.threads=1", "--set", "train.lr=0.003")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root


def test_train_export_report(store):
    records = RunStore(store).runs(GRID)
    assert sorted(r.run_id for r in records) == ["digits__test_efficientnet__frozen",
                                                 "digits__test_efficientnet__full"]
    assert [r.summary.status for r in records] == ["done", "done"]
    best = min(records, key=lambda r: selection_key(r.summary))
    gdir = GridDir(store / GRID)

    # export: the store's rule picks the run, the exports table carries the run's own test figures
    proc = _cli("export", GRID, "--runs", store, "--select", "best-per-dataset", "--providers", "cpu",
                "--batches", "1,8", "--quick-bench", "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == f"best-per-dataset: {best.run_id} ({BEST_RULE})"
    table = pd.read_csv(gdir.exports_csv)
    assert list(table["run_id"]) == [best.run_id]
    results = best.dir.results()
    row = table.iloc[0]
    assert row["status"] == "ok"
    assert row["torch_accuracy"] == pytest.approx(results["accuracy"], abs=1e-12)
    assert row["onnx_accuracy"] == pytest.approx(results["accuracy"], abs=1e-12)
    assert row["torch_f1_macro"] == pytest.approx(results["f1_macro"], abs=1e-12)
    assert row["cpu_b1_p50_ms"] > 0
    reported = best.dir.export.detail()["reported"]
    assert reported["onnx_pred_agreement"] == 1.0  # ONNX predicts what training stored, image by image
    assert best.dir.export.model.is_file()

    # report: every figure made, the best model named by the same rule, with the stored numbers
    proc = _cli("report", GRID, "--runs", store, "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = Path(proc.stdout.strip())
    assert index == gdir.report_dir / "report.md"
    for name in ("dataset_samples.png", "training_history_digits.png", "weight_optimization_digits.png",
                 "confusion_matrices_digits.png", "errors_digits_test_efficientnet.png",
                 "gradcam_digits_test_efficientnet.png", "calibration_digits.png", "latency_digits.png",
                 "strategy_comparison_digits.png", "final_comparison.png", "benchmark_digits.csv", "report.html"):
        assert (gdir.report_dir / name).is_file(), name
    md = index.read_text()
    s = best.summary
    assert f"**Best model: test_efficientnet / {s.strategy}**: test accuracy {results['accuracy']:.3f}" in md
    assert f"validation accuracy {s.best_val_acc:.3f} at its kept epoch {s.best_epoch}" in md
    assert f"**Selection rule**: {BEST_RULE}." in md
    assert "failed:" not in md  # no report step broke
    bench = pd.read_csv(gdir.report_dir / "benchmark_digits.csv").set_index("run_id")
    for r in records:
        assert bench.loc[r.run_id, "accuracy"] == pytest.approx(r.dir.results()["accuracy"], abs=1e-6)
        assert bench.loc[r.run_id, "val_acc"] == pytest.approx(r.summary.best_val_acc, abs=1e-6)
        assert bench.loc[r.run_id, "image_size"] == 32
    final = pd.read_csv(gdir.report_dir / "final_accuracy_comparison.csv", index_col="dataset")
    assert final.loc["digits", "test_efficientnet"] == pytest.approx(results["accuracy"], abs=1e-6)
