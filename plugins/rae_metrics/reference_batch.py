"""Reference sets for distribution metrics: an ADM evaluation ``.npz`` or a folder of images.

An ADM reference batch (``VIRTUAL_imagenet256_labeled.npz`` and friends) holds ``arr_0`` uint8 images
``(N, H, W, 3)`` and, precomputed with the TF Inception, ``mu`` ``(2048,)`` and ``sigma`` ``(2048, 2048)``.
A sample file written by this framework has the same ``arr_0`` layout. Images are decoded with PIL; ``arr_0``
is read batch by batch (memory-mapped or streamed), never loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.npz_stream import NpzArray
from rae_framework.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass(frozen=True)
class ReferenceSet:
    """Images (as uint8 ``(N, H, W, 3)`` or files) and/or precomputed Gaussian statistics."""

    source: str
    images: NpzArray | None = None  # rows read batch by batch, never the whole array
    files: tuple[Path, ...] = ()
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None

    @property
    def has_images(self) -> bool:
        """Whether features can be computed (not only statistics)."""
        return self.images is not None or bool(self.files)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Images as float ``(B, 3, H, W)`` in [0, 1]."""
        total = len(self.images) if self.images is not None else len(self.files)
        for start in range(0, total, batch_size):
            if self.images is not None:
                chunk = self.images.read(start, start + batch_size)
            else:
                chunk = _stack([_read_image(path) for path in self.files[start:start + batch_size]], self.source)
            yield torch.from_numpy(chunk).permute(0, 3, 1, 2).float() / 255.0


def _stack(images: list[np.ndarray], source: str) -> np.ndarray:
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ConfigError(f"reference folder {source}: images differ in size ({sorted(shapes)}); resize them first")
    return np.stack(images)  # (B, H, W, 3)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)


def _from_npz(path: Path) -> ReferenceSet:
    with np.load(path) as data:  # members load only when indexed: the images are opened by rows below
        images = NpzArray.open(path, "arr_0") if "arr_0" in data else None
        mu = data["mu"] if "mu" in data else None
        sigma = data["sigma"] if "sigma" in data else None
    if images is None and (mu is None or sigma is None):
        raise ConfigError(f"{path}: a reference .npz needs 'arr_0' images or 'mu' and 'sigma'")
    if images is not None and (len(images.shape) != 4 or images.shape[-1] != 3 or images.dtype != np.uint8):
        raise ConfigError(f"{path}: 'arr_0' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    return ReferenceSet(str(path), images=images, mu=mu, sigma=sigma)


def load_reference(path: str) -> ReferenceSet:
    """Open an ADM ``.npz`` or an image folder (sorted file names; equal image sizes)."""
    location = Path(path)
    if location.is_file() and location.suffix == ".npz":
        return _from_npz(location)
    if location.is_dir():
        files = tuple(sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        if not files:
            raise ConfigError(f"reference folder {location} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ReferenceSet(str(location), files=files)
    raise ConfigError(f"reference {path!r} is neither an .npz file nor a folder of images")
