"""Check that a run's samples show the digits they were asked for, with a classifier the run never saw.

An RBF support-vector classifier (scikit-learn) is trained on the real digits' training split. It reads
``samples/samples.npz`` (ADM layout: ``arr_0`` uint8 ``(N, H, W, 3)``, ``arr_1`` int64 labels), turns each
sample into an 8 x 8 grey image (channel mean, then block average) and reports, per class, the share of
samples it assigns to the requested label, next to its accuracy on the real held-out digits passed through
the same round trip (upsampled to ``H`` like the ``digits`` data source, 8-bit, block-averaged back)::

    python examples/quickstart/classifier_check.py runs/quickstart/samples/samples.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np
from sklearn.svm import SVC
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import load_split  # noqa: E402  (the quickstart folder is not a package)

CLASSES = 10


def to_small_grey(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 64)`` in [0, 1]: channel mean, then 8 x 8 block average."""
    count, height, width, _ = images.shape
    if height % 8 or width % 8:
        raise ValueError(f"samples of {height}x{width} pixels: the side must be a multiple of 8")
    grey = images.astype(np.float64).mean(-1) / 255.0  # (N, H, W)
    blocks = grey.reshape(count, 8, height // 8, 8, width // 8).mean((2, 4))  # (N, 8, 8)
    return blocks.reshape(count, 64)


def round_trip(digits: np.ndarray, size: int) -> np.ndarray:
    """Real ``(N, 8, 8)`` digits in [0, 1] -> uint8 ``(N, size, size, 3)`` as the data source makes them."""
    grey = F.interpolate(torch.from_numpy(digits)[:, None], size=(size, size), mode="bilinear",
                         align_corners=False)  # (N, 1, size, size)
    pixels = (grey.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)[:, 0].numpy()  # (N, size, size)
    return np.repeat(pixels[..., None], 3, axis=-1)


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> list[float | None]:
    """Share of correct predictions for each class (None where a class has no samples)."""
    return [float((predicted[labels == c] == c).mean()) if (labels == c).any() else None for c in range(CLASSES)]


def check(samples_path: Path) -> dict:
    """Accuracy per class and overall on the generated samples and on the real held-out digits."""
    with np.load(samples_path) as payload:
        samples, labels = payload["arr_0"], payload["arr_1"].astype(np.int64)
    size = samples.shape[1]
    train_x, train_y, test_x, test_y = load_split()
    classifier = SVC(C=10.0, gamma="scale").fit(to_small_grey(round_trip(train_x, size)), train_y)
    generated = classifier.predict(to_small_grey(samples))
    real = classifier.predict(to_small_grey(round_trip(test_x, size)))
    return {"samples": str(samples_path), "count": int(len(labels)),
            "generated": {"overall": float((generated == labels).mean()),
                          "per_class": per_class_accuracy(generated, labels)},
            "real_holdout": {"overall": float((real == test_y).mean()), "count": int(len(test_y)),
                             "per_class": per_class_accuracy(real, test_y)}}


def format_report(result: dict) -> str:
    """A small table: one row per class, generated vs real."""
    def cell(value: float | None) -> str:
        return "   -  " if value is None else f"{value:6.3f}"

    rows = [f"class  generated  real held-out   ({result['count']} samples, "
            f"{result['real_holdout']['count']} real digits)"]
    for label in range(CLASSES):
        rows.append(f"{label:5d}  {cell(result['generated']['per_class'][label])}     "
                    f"{cell(result['real_holdout']['per_class'][label])}")
    rows.append(f"  all  {cell(result['generated']['overall'])}     {cell(result['real_holdout']['overall'])}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Print the table; ``--json`` also writes the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="a run's samples/samples.npz")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = check(args.samples)
    print(format_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
