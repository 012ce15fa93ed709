"""The study's scores are scikit-learn's, on the points they claim; projections keep the sample's order."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import davies_bouldin_score, silhouette_score

from engine.study import projection, scoring
from engine.study.adapter import balanced_positions


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=600, centers=4, n_features=16, cluster_std=1.0, random_state=0)
    return x.astype(np.float32), y


def test_separated_blobs_score_as_separated(blobs):
    x, y = blobs
    sample = balanced_positions(y, 200, seed=1)
    out = scoring.clustering(x, y, sample, 4, seed=0, n_init=3)
    assert out["ari"] == pytest.approx(1.0) and out["nmi"] == pytest.approx(1.0)
    assert out["silhouette"] == pytest.approx(silhouette_score(x[sample], y[sample]), abs=1e-6)
    assert out["davies_bouldin"] == pytest.approx(davies_bouldin_score(x, y), abs=1e-6)
    assert out["silhouette"] > 0.6 and out["davies_bouldin"] < 0.6
    assert out["silhouette_kmeans"] == pytest.approx(out["silhouette"], abs=1e-6)  # k-means found the classes
    assert (out["silhouette_n"], out["kmeans_n"]) == (200, 600)


def test_mixed_classes_score_as_mixed(blobs):
    x, _ = blobs
    y = np.random.default_rng(0).integers(0, 4, len(x))  # labels unrelated to the geometry
    out = scoring.clustering(x, y, np.arange(len(x)), 4, seed=0, n_init=3)
    assert abs(out["ari"]) < 0.05 and out["nmi"] < 0.05
    assert out["silhouette"] < 0.05 and out["davies_bouldin"] > 5
    assert out["silhouette_kmeans"] > 0.6  # the features do cluster, just not by these labels


def test_probes_fit_on_train_score_on_test(blobs):
    x, y = blobs
    out = scoring.probes(x[:400], y[:400], x[400:], y[400:], knn_k=5, seed=0)
    assert out["knn_accuracy"] == pytest.approx(1.0) and out["linear_probe_accuracy"] == pytest.approx(1.0)
    assert (out["knn_k"], out["probe_train_n"]) == (5, 400) and out["linear_probe_converged"]
    shuffled = np.random.default_rng(1).permutation(y[:400])
    chance = scoring.probes(x[:400], shuffled, x[400:], y[400:], knn_k=5, seed=0)
    assert chance["knn_accuracy"] < 0.45 and chance["linear_probe_accuracy"] < 0.45


def test_normalise(blobs):
    x, _ = blobs
    a, b = scoring.normalise(x[:300], x[300:], "l2")
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    a, b = scoring.normalise(x[:300], x[300:], "standard")
    np.testing.assert_allclose(a.mean(0), 0.0, atol=1e-5)  # fitted on train, applied to both
    assert not np.allclose(b.mean(0), 0.0, atol=1e-3)
    train, test = x[:300], x[300:]
    a, b = scoring.normalise(train, test, "none")
    assert a is train and b is test  # features as extracted


def test_balanced_sample_is_seeded_and_even():
    y = np.repeat(np.arange(5), [50, 40, 30, 20, 60])
    s1, s2 = balanced_positions(y, 50, seed=3), balanced_positions(y, 50, seed=3)
    np.testing.assert_array_equal(s1, s2)
    assert np.bincount(y[s1]).tolist() == [10] * 5 and np.all(np.diff(s1) > 0)
    assert not np.array_equal(s1, balanced_positions(y, 50, seed=4))
    np.testing.assert_array_equal(balanced_positions(y, 0, seed=3), np.arange(len(y)))  # 0 = all


def test_projection_shapes_and_determinism(blobs):
    x, y = blobs
    sample = balanced_positions(y, 120, seed=0)
    p1, p2 = projection.project(x, sample, seed=0), projection.project(x, sample, seed=0)
    assert p1["pca"].shape == (120, 2) and p1["tsne"].shape == (120, 2)
    np.testing.assert_array_equal(p1["tsne"], p2["tsne"])
    assert p1["tsne_pca_dims"] == 16  # fewer than 50 dims: no PCA step
    assert 0 < p1["pca_variance"].sum() <= 1
    # t-SNE keeps blobs apart: each point's nearest neighbour has its class
    d = np.linalg.norm(p1["tsne"][:, None] - p1["tsne"][None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (y[sample][d.argmin(1)] == y[sample]).mean() > 0.95
