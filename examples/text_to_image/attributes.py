"""Two attributes of a handwritten digit that its class does not fix, computed from the 8 x 8 ink image.

* stroke mass: the ink sum (thin / bold);
* slant: the shear of the ink, ``-cov(x, y) / var(y)`` with ``y`` the row (downwards), so that a digit whose
  top leans right is positive (upright / slanted).

Each is cut at its class-wise median over the run's training split, so that within every digit half the
images are bold and half slanted: chance agreement is 0.5 for each attribute, whatever the digit.
"""

from __future__ import annotations

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MASS_WORDS = ("thin", "bold")
SLANT_WORDS = ("upright", "slanted")


def stroke_mass(images: np.ndarray) -> np.ndarray:
    """``(N, 8, 8)`` ink in [0, 1] -> ``(N,)`` ink sum."""
    return images.reshape(len(images), -1).sum(1)


def slant(images: np.ndarray) -> np.ndarray:
    """``(N, 8, 8)`` ink in [0, 1] -> ``(N,)`` shear of the ink (positive: the top leans right)."""
    rows, cols = np.mgrid[0:images.shape[1], 0:images.shape[2]].astype(np.float64)
    weight = images / np.maximum(images.sum((1, 2), keepdims=True), 1e-8)  # (N, 8, 8), sums to 1
    y_mean, x_mean = (weight * rows).sum((1, 2)), (weight * cols).sum((1, 2))  # (N,)
    dy, dx = rows - y_mean[:, None, None], cols - x_mean[:, None, None]  # (N, 8, 8)
    return -(weight * dx * dy).sum((1, 2)) / np.maximum((weight * dy * dy).sum((1, 2)), 1e-8)


def thresholds(images: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Class-wise medians of mass and slant: ``{"mass": [10 floats], "slant": [10 floats]}``."""
    mass, shear = stroke_mass(images), slant(images)
    return {"mass": [float(np.median(mass[labels == d])) for d in range(10)],
            "slant": [float(np.median(shear[labels == d])) for d in range(10)]}


def attributes(images: np.ndarray, digits: np.ndarray, cuts: dict[str, list[float]]) -> np.ndarray:
    """``(N, 2)`` int: (bold?, slanted?) of each image, against the medians of the digit it is (or was asked
    to be)."""
    bold = stroke_mass(images) > np.asarray(cuts["mass"])[digits]
    slanted = slant(images) > np.asarray(cuts["slant"])[digits]
    return np.stack([bold, slanted], 1).astype(np.int64)


def caption(digit: int, bold: int, slanted: int) -> str:
    """'a bold, slanted seven'."""
    return f"a {MASS_WORDS[bold]}, {SLANT_WORDS[slanted]} {DIGIT_WORDS[digit]}"


def all_prompts() -> list[tuple[int, int, int]]:
    """Every (digit, bold, slanted) combination, digit-major: 40 of them."""
    return [(d, b, s) for d in range(10) for b in (0, 1) for s in (0, 1)]
