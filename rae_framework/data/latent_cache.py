"""Latent cache: encode a dataset once (optionally with its horizontal flips) into a memory-mapped .npy.

Layout of a cache folder: ``latents.npy`` ``(R, C, h, w)`` with ``R = N`` or ``2N`` (row ``N + i`` is the
flipped image ``i``) in the storage dtype (float32, float16, or bfloat16 kept as its raw 16 bits in int16),
``labels.npy`` int64 ``(N,)`` and ``meta.json`` (key, dtype, counts). Stage 2 reads batches by
``(index, flip)`` and never runs the encoder.

Building is atomic and safe when runs race: one builder holds ``.<name>.lock`` (a
:class:`~rae_framework.engine.run_lock.RunLock`: created exclusively, with a heartbeat), encodes into
``.<name>.building`` with all its ranks (each a contiguous shard, images loaded by DataLoader workers) and
renames that to the final folder; any other run waits for the folder to appear, or takes over the lock once
its builder has died (at once on the same machine, after ``RAE_LOCK_STALE_S`` from another). Where
the folder lives and how big it gets: :mod:`rae_framework.data.cache_plan`.

The latents file is allocated in full before encoding starts, so a disk that is (or becomes) too small fails
there with :class:`~rae_framework.errors.DiskFullError` naming the folder and its free space; the temp folder
is removed and any finished cache is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.cache_plan import CACHE_DIR_ENV, cache_bytes, check_space
from rae_framework.data.loading import Items, LoaderSettings, StackImages, planned_loader, to_device
from rae_framework.engine.distributed import DistContext
from rae_framework.engine.logging import progress
from rae_framework.engine.run_lock import LockTimes, RunLock
from rae_framework.files import FULL_DISK_ERRNOS, full_disk_reported, make_folder

EncodeFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) in [0, 1] -> latents (B, C, h, w)
POLL_SECONDS = 2.0
NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16, "bf16": np.int16}  # bf16: raw bits


def to_storage(latents: torch.Tensor, dtype: str) -> np.ndarray:
    """float latents -> the storage array (bf16 as its raw 16 bits in int16)."""
    if dtype == "bf16":
        return latents.to(torch.bfloat16).view(torch.int16).cpu().numpy()
    return latents.to(torch.float16 if dtype == "fp16" else torch.float32).cpu().numpy()


def from_storage(tensor: torch.Tensor, dtype: str) -> torch.Tensor:
    """Storage rows -> a tensor of the storage dtype (no widening: that happens on the device)."""
    return tensor.view(torch.bfloat16) if dtype == "bf16" else tensor


class LatentCache:
    """Read side of a finished cache folder (memory-mapped, opened lazily so it pickles to workers)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.dtype = self.meta.get("dtype", "fp32")
        self.labels = np.load(self.folder / "labels.npy")  # (N,)
        self.num_samples, self.has_flips = len(self.labels), bool(self.meta["flips"])
        self._latents: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_latents": None}  # never pickle the mapped rows themselves

    @property
    def latents(self) -> np.ndarray:
        """The memory-mapped ``(R, C, h, w)`` storage array."""
        if self._latents is None:
            self._latents = np.load(self.folder / "latents.npy", mmap_mode="r")
        return self._latents

    @staticmethod
    def is_complete(folder: str | Path, key: str) -> bool:
        """Whether ``folder`` holds a finished cache built for ``key``."""
        meta = Path(folder) / "meta.json"
        return meta.is_file() and json.loads(meta.read_text()).get("key") == key

    def rows(self, items: Items) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents (B, C, h, w) in the storage dtype, labels (B,) int64)`` for ``(index, flip)`` items."""
        rows = np.asarray([index + self.num_samples if (flip and self.has_flips) else index
                           for index, flip in items])
        order = np.argsort(rows, kind="stable")  # sorted reads are faster on a memmap
        latents = torch.from_numpy(np.empty((len(rows), *self.latents.shape[1:]), dtype=self.latents.dtype))
        if torch.utils.data.get_worker_info() is not None:
            latents.share_memory_()  # filled in place: handing it to the main process copies nothing
        latents.numpy()[order] = self.latents[rows[order]]
        labels = self.labels[[index for index, _ in items]]
        return from_storage(latents, self.dtype), torch.from_numpy(labels.astype(np.int64))

    def batch(self, items: Items) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents (B, C, h, w) float32, labels (B,) int64)`` for ``(index, flip)`` items."""
        latents, labels = self.rows(items)
        return latents.float(), labels


def _agree(value: bool, context: DistContext) -> bool:
    """Rank 0's ``value`` on every rank."""
    if not context.enabled:
        return value
    flag = torch.tensor([float(value) if context.is_main else 0.0], device=context.device)
    return bool(context.all_reduce_sum(flag).item() > 0)


def _try_lock(folder: Path) -> RunLock | None:
    """The builder's lock ``.<name>.lock`` beside ``folder``, or None while a live builder holds it (a dead
    builder's lock is taken over: see :mod:`rae_framework.engine.run_lock`)."""
    taken = RunLock.take(folder.with_name(f".{folder.name}.lock"), LockTimes.from_environment(),
                         f"latent cache {folder}")
    return taken if isinstance(taken, RunLock) else None


@contextmanager
def _builder(folder: Path, key: str, context: DistContext) -> Iterator[bool]:
    """True when this run must build ``folder`` (rank 0 holding the builder's lock for the block); False once
    another run has built it. Waits meanwhile."""
    while True:
        if _agree(context.is_main and LatentCache.is_complete(folder, key), context):
            yield False
            return
        lock = _try_lock(folder) if context.is_main else None
        if _agree(lock is not None, context):
            try:
                yield True
            finally:
                if lock is not None:
                    lock.release()
            return
        time.sleep(POLL_SECONDS)


def _encode_rows(encode: EncodeFn, dataset, rows: range, num_samples: int, batch_size: int, dtype: str,
                 target: np.ndarray, settings: LoaderSettings, device: torch.device, show_progress: bool) -> None:
    """Encode cache ``rows`` (row ``r`` = image ``r % N``, flipped when ``r >= N``) into ``target``."""
    chunks = [range(start, min(start + batch_size, rows.stop)) for start in range(rows.start, rows.stop, batch_size)]
    plans = [[(row % num_samples, row >= num_samples) for row in chunk] for chunk in chunks]
    loader = planned_loader(StackImages(dataset), plans, settings)
    bar = progress(len(rows), "latent cache", enabled=show_progress)
    for chunk, (_, images, _) in zip(chunks, loader):
        latents = encode(to_device(images, device))  # (b, C, h, w), on the device while workers load ahead
        if tuple(latents.shape[1:]) != target.shape[1:]:
            raise ValueError(f"encoder produced latents {tuple(latents.shape[1:])}, expected {target.shape[1:]}")
        target[chunk.start:chunk.stop] = to_storage(latents.float(), dtype)
        bar.update(len(chunk))
    bar.close()


def _start_build(temp: Path, dataset, total: int, latent_shape: tuple[int, ...], dtype: str) -> None:
    """Rank 0: an empty ``temp`` folder with the preallocated latents file and the labels."""
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    np.lib.format.open_memmap(temp / "latents.npy", mode="w+", dtype=NUMPY_DTYPES[dtype], shape=(total, *latent_shape))
    _reserve(temp / "latents.npy")
    np.save(temp / "labels.npy", np.asarray(_labels(dataset), dtype=np.int64))


def _reserve(path: Path) -> None:
    """Allocate every block of ``path`` now (ENOSPC here, as an ``OSError``): a fresh memory-mapped file is
    sparse, and a disk that fills while its pages are written would kill the process with SIGBUS instead.
    Filesystems that cannot allocate ahead are left as they are."""
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(descriptor, 0, path.stat().st_size)
    except OSError as error:
        if error.errno in FULL_DISK_ERRNOS:
            raise
    finally:
        os.close(descriptor)


def _finish_build(temp: Path, folder: Path, meta: dict) -> None:
    """Rank 0: write ``meta.json`` last, then move the folder into place in one rename."""
    (temp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)  # an unfinished or differently keyed leftover
    os.replace(temp, folder)


@contextmanager
def _removed_on_error(temp: Path, enabled: bool) -> Iterator[None]:
    """Delete the half-built ``temp`` folder (when ``enabled``: rank 0) if the block raises."""
    try:
        yield
    except BaseException:
        if enabled:
            shutil.rmtree(temp, ignore_errors=True)
        raise


def build_latent_cache(folder: str | Path, encode: EncodeFn, dataset, *, latent_shape: tuple[int, int, int],
                       flips: bool, key: str, batch_size: int = 64, context: DistContext | None = None,
                       dtype: str = "fp32", loader: LoaderSettings | None = None) -> LatentCache:
    """The cache of ``key`` in ``folder``: reused when another run built it, else encoded once (see above)."""
    context, folder = context or DistContext(), Path(folder)
    make_folder(folder.parent, "latent cache folder", f"set stages.train_denoiser.latent_cache.folder (or "
                                                      f"${CACHE_DIR_ENV}) to a folder that can be written")
    with _builder(folder, key, context) as must_build:
        if must_build:
            _build(folder, encode, dataset, latent_shape, flips, key, batch_size, context, dtype,
                   loader or LoaderSettings())
    context.barrier()
    return LatentCache(folder)


def _build(folder: Path, encode: EncodeFn, dataset, latent_shape: tuple[int, int, int], flips: bool, key: str,
           batch_size: int, context: DistContext, dtype: str, loader: LoaderSettings) -> None:
    """Encode the cache into ``.<name>.building`` with every rank, then move it into place (rank 0)."""
    temp = folder.with_name(f".{folder.name}.building")
    total = len(dataset) * (2 if flips else 1)
    with full_disk_reported(folder.parent, f"the latent cache {folder.name}"), \
            _removed_on_error(temp, context.is_main):
        if context.is_main:
            check_space(folder.parent, cache_bytes(len(dataset), latent_shape, dtype, flips))
            _start_build(temp, dataset, total, latent_shape, dtype)
        context.barrier()
        target = np.load(temp / "latents.npy", mmap_mode="r+")
        share = -(-total // context.world_size)
        rows = range(min(total, context.rank * share), min(total, (context.rank + 1) * share))
        _encode_rows(encode, dataset, rows, len(dataset), batch_size, dtype, target, loader, context.device,
                     context.is_main)
        target.flush()
        del target
        context.barrier()
        if context.is_main:
            _finish_build(temp, folder, {"key": key, "flips": flips, "num_samples": len(dataset),
                                         "dtype": dtype, "latent_shape": list(latent_shape)})


def _labels(dataset) -> list[int]:
    """Labels of every item, without decoding images when the dataset exposes them."""
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return [int(label) for label in labels]
    return [int(dataset[index][1]) for index in range(len(dataset))]

