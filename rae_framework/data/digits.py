"""scikit-learn's bundled 8x8 digits, read from the file scikit-learn ships without importing scikit-learn.

``sklearn.datasets.load_digits`` parses ``sklearn/datasets/data/digits.csv.gz``: one row per image, 64 pixel
columns (0..16, row-major) and the class last (``sklearn/datasets/_base.py``, ``load_digits``). Importing
``sklearn.datasets`` first imports ``scipy.stats`` and most of scikit-learn, 1.3 s of every process that trains
on digits (each ``rae run`` of the quickstart, each torchrun worker) against 26 ms to parse the file. Where a
scikit-learn keeps the file elsewhere, ``load_digits`` itself is used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def bundled_digits_file() -> Path | None:
    """Where the installed scikit-learn keeps ``digits.csv.gz``, found without importing it; None if not there."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float64 in 0..16, labels (1797,) int64)``: ``load_digits()``'s images and target."""
    path = bundled_digits_file()
    if path is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    table = np.loadtxt(path, delimiter=",")  # (1797, 65)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
