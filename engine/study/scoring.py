"""How well features separate the classes, without training a classifier (and with two small probes).

Every number comes from scikit-learn:

- silhouette and Davies-Bouldin of the true classes (the issue's definition), and of the k-means
  clusters (what a clustering of the features finds by itself);
- ARI and NMI of k-means (k = number of classes, seeded, ``n_init`` restarts) against the true classes;
- kNN and linear-probe (logistic regression on standardised features) accuracy: fit on the training
  split's features, scored on the test split's.

Silhouette is quadratic in the number of points: it is computed on the dataset's seeded,
class-balanced sample (the same points the projections show), and ``silhouette_n`` says how many.
Davies-Bouldin, k-means, ARI and NMI are linear and use the whole test split.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    adjusted_rand_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize

PROBE_MAX_ITER = 1000


def normalise(train: np.ndarray, test: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """``study.normalize``: none, l2 (unit length per vector) or standard (z-scores fitted on train)."""
    if how == "l2":
        return normalize(train), normalize(test)
    if how == "standard":
        scaler = StandardScaler().fit(train)
        return scaler.transform(train), scaler.transform(test)
    return train, test


def clustering(x: np.ndarray, y: np.ndarray, sample: np.ndarray, k: int, seed: int, n_init: int) -> dict:
    """Silhouette (on ``sample``) and Davies-Bouldin of the true classes and of k-means; ARI, NMI of k-means."""
    t0 = time.perf_counter()
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
    clusters = km.labels_
    xs, ys, cs = x[sample], y[sample], clusters[sample]
    out = {
        "silhouette": float(silhouette_score(xs, ys)),
        "davies_bouldin": float(davies_bouldin_score(x, y)),
        "ari": float(adjusted_rand_score(y, clusters)),
        "nmi": float(normalized_mutual_info_score(y, clusters)),
        # a clustering of one cluster has no silhouette: k-means found fewer than 2 distinct clusters
        "silhouette_kmeans": float(silhouette_score(xs, cs)) if len(np.unique(cs)) > 1 else float("nan"),
        "davies_bouldin_kmeans": float(davies_bouldin_score(x, clusters)) if len(np.unique(clusters)) > 1
        else float("nan"),
        "kmeans_inertia": float(km.inertia_),
        "kmeans_iterations": int(km.n_iter_),
        "silhouette_n": int(len(sample)),
        "kmeans_n": int(len(x)),
    }
    out["clustering_seconds"] = time.perf_counter() - t0
    return out


def probes(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, knn_k: int,
           seed: int) -> dict:
    """kNN and logistic-regression accuracy on the test split, both fitted on the training split."""
    t0 = time.perf_counter()
    knn = KNeighborsClassifier(n_neighbors=min(knn_k, len(train_y))).fit(train_x, train_y)
    knn_acc = float(knn.score(test_x, test_y))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=seed))
    probe.fit(train_x, train_y)
    lr = probe[-1]
    return {
        "knn_accuracy": knn_acc,
        "linear_probe_accuracy": float(probe.score(test_x, test_y)),
        "linear_probe_converged": bool(np.all(np.asarray(lr.n_iter_) < PROBE_MAX_ITER)),
        "knn_k": int(knn.n_neighbors),
        "probe_train_n": int(len(train_y)),
        "probe_seconds": time.perf_counter() - t0,
    }
