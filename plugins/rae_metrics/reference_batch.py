"""Reference sets for distribution metrics: an ADM evaluation ``.npz`` or a folder of images, streamed.

An ADM reference batch (``VIRTUAL_imagenet256_labeled.npz`` and friends) holds ``arr_0`` uint8 images
``(N, H, W, 3)`` and, precomputed with the TF Inception, ``mu`` ``(2048,)`` / ``sigma`` ``(2048, 2048)`` of the
pool3 features and ``mu_s`` / ``sigma_s`` of the spatial ones (ADM's evaluator ``read_statistics``, reference:
guided-diffusion evaluations/evaluator.py:L164-172). A sample file written by this framework has the same
``arr_0`` layout.

Nothing here holds a whole reference set in memory: opening reads only the ``.npy`` header of ``arr_0``
(as ADM's ``open_npz_array``, evaluator.py:L517), images come in uint8 batches straight from the archive,
and statistics are read on request, one array at a time. Folder images are decoded with PIL per batch.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rae_framework.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
IMAGES_MEMBER = "arr_0.npy"


@dataclass(frozen=True)
class NpyHeader:
    """Layout of one ``.npy`` member: shape, dtype and the byte offset of its data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int


def read_npy_header(path: Path, member: str) -> NpyHeader:
    """The header of ``member`` of the ``.npz`` at ``path`` (its data is not read)."""
    with zipfile.ZipFile(path) as archive, archive.open(member) as stream:
        major, _ = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(stream)
        if fortran:
            raise ConfigError(f"{path}: {member} is stored in Fortran order; save it C-contiguous")
        return NpyHeader(tuple(shape), np.dtype(dtype), stream.tell())


def iter_npz_rows(path: Path, header: NpyHeader, batch_size: int) -> Iterator[np.ndarray]:
    """Rows of ``arr_0`` in batches of ``batch_size`` ``(b, *shape[1:])``, read sequentially from the archive."""
    row_shape = header.shape[1:]
    row_bytes = int(np.prod(row_shape)) * header.dtype.itemsize
    with zipfile.ZipFile(path) as archive, archive.open(IMAGES_MEMBER) as stream:
        stream.read(header.offset)
        for start in range(0, header.shape[0], batch_size):
            count = min(batch_size, header.shape[0] - start)
            chunk = stream.read(count * row_bytes)
            if len(chunk) != count * row_bytes:
                raise ConfigError(f"{path}: {IMAGES_MEMBER} ends early (truncated file?)")
            yield np.frombuffer(bytearray(chunk), dtype=header.dtype).reshape(count, *row_shape)


def uint8_batch_to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


@dataclass(frozen=True)
class ReferenceSet:
    """A reference set on disk: an ADM ``.npz`` (``header`` of its ``arr_0``, if any) or image ``files``."""

    source: str
    header: NpyHeader | None = None
    files: tuple[Path, ...] = ()
    statistic_names: frozenset[str] = frozenset()

    @property
    def has_images(self) -> bool:
        """Whether features can be computed (not only statistics)."""
        return self.header is not None or bool(self.files)

    def __len__(self) -> int:
        return self.header.shape[0] if self.header is not None else len(self.files)

    def statistics(self, mean_key: str, cov_key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Precomputed ``(mu, sigma)`` stored under ``mean_key`` / ``cov_key``, or None when absent."""
        if not {mean_key, cov_key} <= self.statistic_names:
            return None
        with np.load(self.source) as data:  # an npz member is read only when indexed
            return data[mean_key], data[cov_key]

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Images as float ``(B, 3, H, W)`` in [0, 1], ``batch_size`` at a time."""
        if self.header is not None:
            chunks = iter_npz_rows(Path(self.source), self.header, batch_size)
        else:
            chunks = (_stack([_read_image(path) for path in self.files[start:start + batch_size]], self.source)
                      for start in range(0, len(self.files), batch_size))
        for chunk in chunks:
            yield uint8_batch_to_tensor(chunk)


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
    header = read_npy_header(path, IMAGES_MEMBER) if "arr_0" in names else None
    if header is None and not {"mu", "sigma"} <= names:
        raise ConfigError(f"{path}: a reference .npz needs 'arr_0' images or 'mu' and 'sigma'")
    if header is not None and (len(header.shape) != 4 or header.shape[-1] != 3 or header.dtype != np.uint8):
        raise ConfigError(f"{path}: 'arr_0' must be uint8 (N, H, W, 3), got {header.dtype} {header.shape}")
    return ReferenceSet(str(path), header=header, statistic_names=names - {"arr_0"})


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
