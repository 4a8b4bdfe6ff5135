"""Image collections read by rows, in batches: an ADM ``.npz``, a folder of images, a dataset split.

Evaluation never holds a whole collection: each rank reads its contiguous share (:func:`rank_span`) batch
by batch as ``(b, 3, H, W)`` float32 in ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from rae_framework.data.datasets import center_crop_arr, list_image_folder
from rae_framework.data.npz_stream import NpzArray
from rae_framework.errors import ConfigError


class ImageRows(Protocol):
    """Anything with a length whose rows read as images ``(b, 3, H, W)`` in [0, 1]."""

    def __len__(self) -> int:
        """Number of images."""

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Images ``[start, stop)``."""


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


class NpzImages:
    """``arr_0`` uint8 ``(N, H, W, 3)`` of an ADM ``.npz`` (memory-mapped or streamed, never loaded whole)."""

    def __init__(self, path: str | Path, where: str = "stages.evaluate.reference") -> None:
        try:
            self.array = NpzArray.open(path, "arr_0")
        except KeyError:
            raise ConfigError(f"{where}: {path} has no 'arr_0' images (ADM layout)") from None

    def __len__(self) -> int:
        return len(self.array)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Images ``[start, stop)`` as floats."""
        return uint8_to_tensor(self.array.read(start, stop))


class FolderImages:
    """Image files (class subfolders or flat), decoded and ADM-centre-cropped to ``image_size`` on read."""

    def __init__(self, path: str | Path, image_size: int) -> None:
        path = Path(path)
        nested = any(child.is_dir() for child in path.iterdir())
        self.files = list_image_folder(path)[0] if nested else sorted(path.iterdir())
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Images ``[start, stop)``, decoded now."""
        arrays = []
        for file in self.files[start:stop]:
            with Image.open(file) as image:
                arrays.append(np.asarray(center_crop_arr(image.convert("RGB"), self.image_size)))
        return uint8_to_tensor(np.stack(arrays))


class DatasetImages:
    """The images of a dataset split (items ``(image (3, H, W), label)``), unflipped."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Images ``[start, stop)``."""
        return torch.stack([self.dataset[(index, False)][0] for index in range(start, min(stop, len(self)))])


def reference_images(path: str | Path, image_size: int) -> NpzImages | FolderImages:
    """The reference collection of ``stages.evaluate.reference``: an ADM ``.npz`` or a folder of images."""
    return NpzImages(path) if Path(path).suffix == ".npz" else FolderImages(path, image_size)


def rank_span(count: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous share of ``count`` rows (shares differ by at most one row)."""
    return range(count * rank // world_size, count * (rank + 1) // world_size)


def image_batches(rows: ImageRows, span: range, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive batches of ``span``'s images."""
    for start in range(span.start, span.stop, batch_size):
        yield rows.read(start, min(start + batch_size, span.stop))
