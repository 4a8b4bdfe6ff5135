"""The scikit-learn digits split shared by the quickstart's scripts (encoder pretraining, classifier check).

The split is fixed (stratified, seed 0): the encoder is pretrained and the checking classifier is trained on
the same 75 % of the 1,797 digits, and both are evaluated on the other 25 %.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

TEST_FRACTION = 0.25
SPLIT_SEED = 0


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_images, train_labels, test_images, test_labels)``; images float32 ``(N, 8, 8)`` in [0, 1]."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (N, 8, 8), ink = 1
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=TEST_FRACTION, random_state=SPLIT_SEED,
        stratify=digits.target)
    return x_train, y_train, x_test, y_test
