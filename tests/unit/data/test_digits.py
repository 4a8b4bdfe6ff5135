"""The bundled digits read from scikit-learn's own file equal ``load_digits()``, without importing scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

from rae_framework.data import digits


def test_the_file_gives_load_digits_arrays_exactly():
    assert digits.bundled_digits_file() is not None
    images, labels = digits.load_digit_arrays()
    reference = load_digits()
    assert images.dtype == reference.images.dtype and np.array_equal(images, reference.images)
    assert labels.dtype == np.int64 and np.array_equal(labels, reference.target)


def test_without_the_file_load_digits_is_used(monkeypatch):
    monkeypatch.setattr(digits, "bundled_digits_file", lambda: None)
    images, labels = digits.load_digit_arrays()
    assert images.shape == (1797, 8, 8) and np.array_equal(labels, load_digits().target)


def test_a_digits_dataset_and_its_count_do_not_import_scikit_learn():
    code = ("import sys; from rae_framework.data.datasets import DigitsDataset, dataset_size; "
            "from rae_framework.data.config import DataConfig; "
            "assert len(DigitsDataset(16)) == dataset_size(DataConfig(source='digits')) == 1797; "
            "assert 'sklearn' not in sys.modules, 'sklearn imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
