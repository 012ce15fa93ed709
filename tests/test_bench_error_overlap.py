"""bench/error_overlap.py on run folders written by the store: the shared errors and the averaging it reports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.store.run_dir import RunDir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def overlap():
    spec = importlib.util.spec_from_file_location("error_overlap", ROOT / "bench" / "error_overlap.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["error_overlap"] = module
    spec.loader.exec_module(module)
    return module


def _probs(preds: list[int], confidence: float) -> np.ndarray:
    p = np.full((len(preds), 3), (1 - confidence) / 2)
    p[np.arange(len(preds)), preds] = confidence
    return p


def _run(root: Path, name: str, probs: np.ndarray, labels: np.ndarray) -> Path:
    run = RunDir(root / name / "footwear__efficientnet_lite0__full")
    run.path.mkdir(parents=True)
    run.write_probs(probs, labels, np.arange(len(labels)))
    return run.path


def test_shared_errors_and_the_best_average(overlap, tmp_path, capsys):
    labels = np.array([0, 1, 2, 0, 1])
    # a misses images 3 and 4, b misses 0 and 4 (both confidently), c misses 4 only and is unsure throughout
    _run(tmp_path, "a", _probs([0, 1, 2, 1, 2], 0.9), labels)
    _run(tmp_path, "b", _probs([2, 1, 2, 0, 0], 0.8), labels)
    _run(tmp_path, "c", _probs([0, 1, 2, 0, 0], 0.4), labels)
    paths = overlap.run_dirs([str(tmp_path)])
    names, probs, got_labels, _ = overlap.load(paths)
    assert names == ["a", "b", "c"]  # the shared run id dropped
    assert np.array_equal(got_labels, labels)

    best = overlap.best_ensembles(probs, labels, exhaustive=12)
    # c alone is right on 4 of 5; every average keeps image 4 wrong and a's confident miss of image 3
    assert [(k, acc) for k, acc, _ in best] == [(1, pytest.approx(0.8)), (2, pytest.approx(0.6)),
                                                (3, pytest.approx(0.6))]
    assert best[0][2] == (2,)
    # a + b: a's 0.9 outvotes b's 0.8 on images 0 (a right) and 3 (a wrong)
    assert overlap.ensemble_accuracy(probs, labels, (0, 1)) == pytest.approx(0.6)
    greedy = overlap.best_ensembles(probs, labels, exhaustive=1)
    assert greedy[0] == (1, 0.8, (2,)) and len(greedy) == 3

    assert overlap.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrong in every run: 1; in at least half: 1; in any: 3" in out
    assert "| a | 2 | 0.6000 |" in out and "| c | 1 | 0.8000 |" in out


def test_runs_of_different_test_splits_are_refused(overlap, tmp_path):
    _run(tmp_path, "a", _probs([0, 1], 0.9), np.array([0, 1]))
    _run(tmp_path, "b", _probs([0, 1, 2], 0.9), np.array([0, 1, 2]))
    with pytest.raises(SystemExit, match="a different test split"):
        overlap.load(overlap.run_dirs([str(tmp_path)]))


def test_no_finished_run_says_where_it_looked(overlap, tmp_path):
    with pytest.raises(SystemExit, match=f"no finished run .*{tmp_path.name}"):
        overlap.main([str(tmp_path)])
