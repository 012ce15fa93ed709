"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import numpy as np

from .raw import ArraySplit, RawDataset

TEST_FRACTION = 0.2  # the set has no test split of its own


def load(seed: int) -> RawDataset:
    """Digits with a stratified, seeded test split carved out; index is the position in load_digits()."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Values are 0..16: stretch to 0..255 so it looks like any other uint8 image.
    x = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    whole = ArraySplit.whole(x, y)
    train_pos, test_pos = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, stratify=y,
                                           random_state=seed)
    return RawDataset(whole.take(np.sort(train_pos)), whole.take(np.sort(test_pos)),
                      tuple(str(n) for n in bunch.target_names),
                      f"scikit-learn load_digits (8x8 grey, 0..16 scaled to 0..255), "
                      f"test {TEST_FRACTION:.0%} stratified seed {seed}")
