"""Reference sets for distribution metrics: an ADM evaluation ``.npz`` or a folder of images, streamed.

An ADM reference batch (``VIRTUAL_imagenet256_labeled.npz`` and friends) holds ``arr_0`` uint8 images
``(N, H, W, 3)`` and, precomputed with the TF Inception, ``mu`` ``(2048,)`` / ``sigma`` ``(2048, 2048)`` of the
pool3 features and ``mu_s`` / ``sigma_s`` of the spatial ones (ADM's evaluator ``read_statistics``, reference:
guided-diffusion evaluations/evaluator.py:L164-172). A sample file written by this framework has the same
``arr_0`` layout.

Nothing here holds a whole reference set in memory: opening reads only the ``.npy`` header of ``arr_0``
(as ADM's ``open_npz_array``, evaluator.py:L517), images come in uint8 batches through the framework's
:class:`~rae_framework.data.npz_stream.NpzArray` (memory-mapped where stored uncompressed), and statistics
are read on request, one array at a time. Folder images are decoded with PIL per batch.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.image_rows import uint8_to_tensor
from rae_framework.data.npz_stream import NpzArray
from rae_framework.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass(frozen=True)
class ReferenceSet:
    """A reference set on disk: an ADM ``.npz`` (its ``arr_0`` ``images``, if any) or image ``files``."""

    source: str
    images: NpzArray | None = None
    files: tuple[Path, ...] = ()
    statistic_names: frozenset[str] = frozenset()

    @property
    def has_images(self) -> bool:
        """Whether features can be computed (not only statistics)."""
        return self.images is not None or bool(self.files)

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)

    def statistics(self, mean_key: str, cov_key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Precomputed ``(mu, sigma)`` stored under ``mean_key`` / ``cov_key``, or None when absent."""
        if not {mean_key, cov_key} <= self.statistic_names:
            return None
        with np.load(self.source) as data:  # an npz member is read only when indexed
            return data[mean_key], data[cov_key]

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Images as float ``(B, 3, H, W)`` in [0, 1], ``batch_size`` at a time."""
        if self.images is not None:
            chunks = _checked(self.images.batches(batch_size))
        else:
            chunks = (_stack([_read_image(path) for path in self.files[start:start + batch_size]], self.source)
                      for start in range(0, len(self.files), batch_size))
        for chunk in chunks:
            yield uint8_to_tensor(chunk)


def _checked(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The rows of an ``.npz`` member; a truncated or unreadable archive is invalid input."""
    try:
        yield from chunks
    except ValueError as error:
        raise ConfigError(str(error)) from None


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
    with zipfile.ZipFile(path) as archive:
        names = frozenset(name.removesuffix(".npy") for name in archive.namelist())
    images = _open_images(path) if "arr_0" in names else None
    if images is None and not {"mu", "sigma"} <= names:
        raise ConfigError(f"{path}: a reference .npz needs 'arr_0' images or 'mu' and 'sigma'")
    if images is not None and (len(images.shape) != 4 or images.shape[-1] != 3 or images.dtype != np.uint8):
        raise ConfigError(f"{path}: 'arr_0' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    return ReferenceSet(str(path), images=images, statistic_names=names - {"arr_0"})


def _open_images(path: Path) -> NpzArray:
    try:
        return NpzArray.open(path, "arr_0")
    except ValueError as error:  # Fortran order: rows cannot be streamed
        raise ConfigError(f"{error}; save it C-contiguous") from None


def load_reference(path: str) -> ReferenceSet:
    """Open an ADM ``.npz`` or an image folder (sorted file names; equal image sizes); reads no images."""
    location = Path(path)
    if location.is_file() and location.suffix == ".npz":
        return _from_npz(location)
    if location.is_dir():
        files = tuple(sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        if not files:
            raise ConfigError(f"reference folder {location} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ReferenceSet(str(location), files=files)
    raise ConfigError(f"reference {path!r} is neither an .npz file nor a folder of images")
