"""Latent cache: encode a dataset once (optionally with its horizontal flips) into a memory-mapped .npy.

Layout of the cache folder: ``latents.npy`` float32 ``(R, C, h, w)`` with ``R = N`` or ``2N`` (row ``N + i`` is
the flipped image ``i``), ``labels.npy`` int64 ``(N,)`` and ``meta.json`` (key, counts). Stage 2 then reads
batches by ``(index, flip)`` and never runs the encoder. Ranks encode disjoint shards into the same file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rae_framework.engine.distributed import DistContext
from rae_framework.engine.logging import progress

EncodeFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) in [0, 1] -> latents (B, C, h, w)


class LatentCache:
    """Read side of a finished cache folder (memory-mapped)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.latents = np.load(self.folder / "latents.npy", mmap_mode="r")  # (R, C, h, w)
        self.labels = np.load(self.folder / "labels.npy")  # (N,)
        self.num_samples, self.has_flips = len(self.labels), bool(self.meta["flips"])

    @staticmethod
    def is_complete(folder: str | Path, key: str) -> bool:
        """Whether ``folder`` holds a finished cache built for ``key``."""
        meta = Path(folder) / "meta.json"
        return meta.is_file() and json.loads(meta.read_text()).get("key") == key

    def batch(self, items: list[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents (B, C, h, w) float32, labels (B,) int64)`` for ``(index, flip)`` items."""
        rows = [index + self.num_samples if (flip and self.has_flips) else index for index, flip in items]
        order = np.argsort(rows, kind="stable")  # sorted reads are faster on a memmap
        block = np.asarray(self.latents[np.asarray(rows)[order]])
        latents = np.empty_like(block)
        latents[order] = block
        labels = self.labels[[index for index, _ in items]]
        return torch.from_numpy(latents), torch.from_numpy(labels.astype(np.int64))


def _encode_rows(encode: EncodeFn, dataset, rows: range, num_samples: int, batch_size: int,
                 shape: tuple[int, ...], target: np.ndarray, enabled: bool) -> None:
    """Encode cache ``rows`` (row ``r`` = image ``r % N``, flipped when ``r >= N``) into ``target``."""
    bar = progress(len(rows), "latent cache", enabled=enabled)
    for start in range(rows.start, rows.stop, batch_size):
        chunk = range(start, min(start + batch_size, rows.stop))
        images = torch.stack([dataset[(row % num_samples, row >= num_samples)][0] for row in chunk])
        latents = encode(images).float().cpu().numpy()  # (b, C, h, w)
        if latents.shape[1:] != shape:
            raise ValueError(f"encoder produced latents {latents.shape[1:]}, expected {shape}")
        target[chunk.start:chunk.stop] = latents
        bar.update(len(chunk))
    bar.close()


def build_latent_cache(folder: str | Path, encode: EncodeFn, dataset, *, latent_shape: tuple[int, int, int],
                       flips: bool, key: str, batch_size: int = 64,
                       context: DistContext | None = None) -> LatentCache:
    """Encode ``dataset`` (and its flips) once into ``folder``; every rank encodes a contiguous shard."""
    context, folder = context or DistContext(), Path(folder)
    temp = folder.with_name(f".{folder.name}.tmp")
    num_samples = len(dataset)
    total = num_samples * (2 if flips else 1)
    if context.is_main:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        np.lib.format.open_memmap(temp / "latents.npy", mode="w+", dtype=np.float32, shape=(total, *latent_shape))
        labels = np.asarray([int(label) for label in _labels(dataset)], dtype=np.int64)
        np.save(temp / "labels.npy", labels)
    context.barrier()
    target = np.load(temp / "latents.npy", mmap_mode="r+")
    share = -(-total // context.world_size)
    rows = range(context.rank * share, min(total, (context.rank + 1) * share))
    _encode_rows(encode, dataset, rows, num_samples, batch_size, tuple(latent_shape), target, context.is_main)
    target.flush()
    del target
    context.barrier()
    if context.is_main:
        (temp / "meta.json").write_text(json.dumps({"key": key, "flips": flips, "num_samples": num_samples,
                                                    "latent_shape": list(latent_shape)}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(temp, folder)
    context.barrier()
    return LatentCache(folder)


def _labels(dataset) -> list[int]:
    """Labels of every item, without decoding images when the dataset exposes them."""
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return [int(label) for label in labels]
    return [int(dataset[index][1]) for index in range(len(dataset))]
