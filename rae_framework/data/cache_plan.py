"""Torch-free side of the latent cache: its settings, where it lives, its size, and the disk-space check.

``rae validate`` uses this module (it must not import torch); the build and read sides are in
:mod:`rae_framework.data.latent_cache`.

A cache is shared by every run with the same key (encoder, data, latent statistics, storage dtype, flips):
it lives in ``<folder>/<key[:24]>/`` where ``folder`` is the setting, else ``$RAE_LATENT_CACHE_DIR``, else
the run directory's ``latent_cache/`` (then it is per run).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rae_framework.config import ComponentConfig
from rae_framework.data.digits import load_digit_arrays
from rae_framework.errors import ConfigError
from rae_framework.files import free_bytes, human_bytes

CACHE_DIR_ENV = "RAE_LATENT_CACHE_DIR"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG", ".JPG", ".PNG")  # image files of a folder
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
LABEL_BYTES = 8  # int64 per image
SPACE_MARGIN = 1.02  # headroom over the estimate (file headers, metadata, rounding)


class LatentCacheConfig(ComponentConfig):
    """Encode the training set once into a memory-mapped file that stage 2 reads instead of the encoder."""

    enabled: bool = Field(True, description="Use the cache; false = encode every batch on the fly (the "
                                            "better default on GPUs at ImageNet scale: encoding costs ~3% of "
                                            "a DiT-XL step and needs no disk).")
    dtype: Literal["bf16", "fp16", "fp32"] = Field("fp32", description="Storage dtype of the latents: bf16 "
                                                                      "halves the size (ImageNet 256, 768x16x16, "
                                                                      "with flips: 1.0 TB vs 2.0 TB).")
    flips: bool | None = Field(None, description="Also cache every image's horizontal flip; None = follow "
                                                 "data.horizontal_flip. false with horizontal_flip on trains "
                                                 "without flips (half the size).")
    folder: str | None = Field(None, description="Folder shared by runs (one subfolder per cache key); None = "
                                                 f"${CACHE_DIR_ENV}, else the run directory's latent_cache/.")

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        """``latent_cache: true/false`` (the earlier setting) means ``{enabled: true/false}``."""
        return {"enabled": value} if isinstance(value, bool) else value

    def uses_flips(self, horizontal_flip: bool) -> bool:
        """Whether the cache holds flipped rows, given ``data.horizontal_flip``."""
        return horizontal_flip if self.flips is None else (self.flips and horizontal_flip)


def cache_root(config: LatentCacheConfig, run_dir: str | Path) -> Path:
    """The folder that holds cache subfolders: the setting, else the environment, else per run."""
    chosen = config.folder or os.environ.get(CACHE_DIR_ENV)
    return Path(chosen).expanduser() if chosen else Path(run_dir) / "latent_cache"


def cache_folder(config: LatentCacheConfig, run_dir: str | Path, key: str) -> Path:
    """The folder of the cache with ``key``."""
    return cache_root(config, run_dir) / key[:24]


def cache_bytes(num_samples: int, latent_shape: tuple[int, ...], dtype: str, flips: bool) -> int:
    """Bytes of a cache: ``N`` (x2 with flips) latent rows of ``dtype`` plus int64 labels."""
    rows = num_samples * (2 if flips else 1)
    return rows * math.prod(latent_shape) * DTYPE_BYTES[dtype] + num_samples * LABEL_BYTES


def check_space(folder: str | Path, needed: int, where: str = "stages.train_denoiser.latent_cache") -> None:
    """:class:`ConfigError` when the disk of ``folder`` has less than ``needed`` bytes (with headroom) free."""
    free = free_bytes(folder)
    if free < needed * SPACE_MARGIN:
        raise ConfigError(f"{where}: the latent cache needs {human_bytes(needed)} but {folder} has only "
                          f"{human_bytes(free)} free; set {where}.folder (or ${CACHE_DIR_ENV}) to a larger "
                          f"disk, choose dtype bf16, flips false, or enabled false (encode on the fly)")


def training_images(data: Any) -> int | None:
    """Images in the training split of ``data`` (a DataConfig), counted without decoding or torch; None for
    shards not indexed yet."""
    if data.source == "digits":
        total = len(load_digit_arrays()[1])
    elif data.source == "webdataset":
        total = shard_samples(data)
        if total is None:
            return None
    else:
        total = sum(1 for path in Path(data.root).glob("*/**/*") if path.suffix in IMAGE_SUFFIXES)
    return total - int(round(total * data.holdout_fraction))


def _matching_cache(root: Path, num_samples: int, latent_shape: tuple[int, ...], dtype: str, flips: bool) -> bool:
    """Whether ``root`` already holds a finished cache of this size and layout (validate cannot know the key:
    it depends on the latent statistics, computed by the run)."""
    import json

    wanted = {"num_samples": num_samples, "latent_shape": list(latent_shape), "dtype": dtype, "flips": flips}
    for meta in root.glob("*/meta.json") if root.is_dir() else ():
        found = json.loads(meta.read_text())
        if all(found.get(name, "fp32" if name == "dtype" else None) == value for name, value in wanted.items()):
            return True
    return False


def shard_samples(data: Any) -> int | None:
    """Samples of a webdataset source from its cached index; None when the shards are not indexed yet (validate
    does not scan them: the first stage that reads the data does)."""
    from rae_framework.data.webdataset_index import cached_index

    index = cached_index(data.shards, data.image_key, data.caption_key)
    return None if index is None else len(index)


def _data_present(data: Any) -> bool:
    """Whether the folder or the shards of ``data`` are on this machine."""
    if data.source == "webdataset":
        from rae_framework.assembly_checks import shards_present

        return shards_present(data)
    return data.source != "folder" or Path(data.root or "").is_dir()


def latent_cache_report(assembly: Any, run_dir: str | Path) -> str | None:
    """``rae validate``'s line on the latent cache (size, folder, free space), or None without one; a
    :class:`ConfigError` when the disk lacks the space and no matching cache is there yet."""
    stage = getattr(assembly.stages, "train_denoiser", None)
    if stage is None or not stage.enabled or not stage.latent_cache.enabled or assembly.latent_shape is None:
        return None
    config, shape, data = stage.latent_cache, tuple(assembly.latent_shape), assembly.data
    flips, root = config.uses_flips(data.horizontal_flip), cache_root(config, run_dir)
    layout = f"{'x'.join(map(str, shape))} {config.dtype}{', + flips' if flips else ''}"
    where = {"folder": "data.root", "webdataset": "data.shards"}.get(data.source)
    if where and not _data_present(data):
        return (f"latent cache: {human_bytes(cache_bytes(1, shape, config.dtype, flips))} per image ({layout}); "
                f"{where} {data.root if data.source == 'folder' else data.shards} is not on this machine, so the "
                f"total is unknown")
    images = training_images(data)
    if images is None:
        return (f"latent cache: {human_bytes(cache_bytes(1, shape, config.dtype, flips))} per image ({layout}); "
                f"data.shards are not indexed yet (the first stage scans them), so the total is unknown")
    needed = cache_bytes(images, shape, config.dtype, flips)
    line = (f"latent cache: {human_bytes(needed)} ({images} images, {layout}) in {root}/, "
            f"{human_bytes(free_bytes(root))} free")
    if _matching_cache(root, images, shape, config.dtype, flips):
        return line + " (a cache of this layout is already there)"
    check_space(root, needed)
    return line
