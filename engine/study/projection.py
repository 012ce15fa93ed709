"""2-D views of a dataset's sample under one extractor: PCA and t-SNE (scikit-learn).

PCA is fitted on the whole test split's features and applied to the sample;
t-SNE (quadratic) runs on the sample only, after a PCA to at most 50
dimensions (standard practice; it changes little and saves minutes), seeded.
Every extractor of a dataset is projected on the same sample, so the panels
of a figure show the same images.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

TSNE_PCA_DIMS = 50


def project(test_x: np.ndarray, sample: np.ndarray, seed: int) -> dict:
    """``pca`` and ``tsne`` (n_sample, 2) float32, the PCA's explained variance, and the seconds each took."""
    t0 = time.perf_counter()
    pca = PCA(n_components=2, random_state=seed).fit(test_x)
    pca_xy = pca.transform(test_x[sample])
    t1 = time.perf_counter()
    xs = test_x[sample]
    dims = min(TSNE_PCA_DIMS, xs.shape[1], len(xs))
    if dims < xs.shape[1]:
        xs = PCA(n_components=dims, random_state=seed).fit_transform(xs)
    perplexity = min(30.0, (len(xs) - 1) / 3)  # t-SNE needs perplexity < n
    tsne_xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(xs)
    t2 = time.perf_counter()
    return {"pca": pca_xy.astype(np.float32), "tsne": tsne_xy.astype(np.float32),
            "pca_variance": pca.explained_variance_ratio_.astype(np.float32),
            "pca_seconds": t1 - t0, "tsne_seconds": t2 - t1, "tsne_perplexity": perplexity, "tsne_pca_dims": dims}
