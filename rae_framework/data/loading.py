"""The input pipeline: whole planned batches fetched by DataLoader workers, ahead of the step that uses them.

A :class:`~rae_framework.data.datasets.PlannedBatches` sampler (or any iterable of ``(index, flip)`` lists)
fixes the order, so workers change only *when* a batch is read, never *which*: ``(index, flip)`` plans and
exact resume hold for any worker count. Each worker fetches a whole batch (``batch_size=None``); pinned
memory on CUDA; ``prefetch_factor`` batches per worker in flight; workers persist across the run. The
consumer (:class:`PrefetchedBatches`) checks that every batch is the one the loop asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

Items = list  # (index, flip), with planned random crops (index, flip, (fy, fx)), or a bare index (centre crop)
Fetch = Callable[[Items], tuple[torch.Tensor, ...]]  # items -> tensors whose first dimension is len(items)


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are loaded: worker processes, batches in flight per worker, pinned memory."""

    num_workers: int = 0
    prefetch_factor: int = 2
    pin_memory: bool | None = None  # None = when CUDA is available

    def pinned(self) -> bool:
        """Whether to pin host batches (page-locked, for asynchronous copies to the GPU)."""
        return torch.cuda.is_available() if self.pin_memory is None else self.pin_memory


class BatchFetches(torch.utils.data.Dataset):
    """A dataset indexed by a whole item list: ``dataset[items] = (items, *fetch(items))``."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch

    def __getitem__(self, items: Items) -> tuple:
        return (list(items), *self.fetch(items))


class StackImages:
    """A :data:`Fetch` over an image dataset: ``items -> (images (B, 3, H, W), labels (B,) int64)``; runs in
    the workers (decode, crop, flip, collate)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __call__(self, items: Items) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.dataset[item if isinstance(item, int) else tuple(item)] for item in items]
        images = torch.stack([image for image, _ in pairs])  # (B, 3, H, W)
        return images, torch.tensor([label for _, label in pairs], dtype=torch.int64)


def _as_is(batch: tuple) -> tuple:
    """No collation: a worker already returns the whole batch."""
    return batch


def planned_loader(fetch: Fetch, batches: Iterable[Items], settings: LoaderSettings) -> torch.utils.data.DataLoader:
    """A DataLoader yielding ``(items, *tensors)`` for each item list of ``batches``, in order."""
    workers = settings.num_workers
    return torch.utils.data.DataLoader(
        BatchFetches(fetch), sampler=batches, batch_size=None, collate_fn=_as_is, num_workers=workers,
        pin_memory=settings.pinned(), prefetch_factor=settings.prefetch_factor if workers else None,
        persistent_workers=workers > 0)


class PrefetchedBatches:
    """The batches of a known plan, loaded ahead; :meth:`take` returns the next one after checking that it
    holds the expected items (a mismatch means the loop and the plan disagree: an error, never silent)."""

    def __init__(self, fetch: Fetch, batches: Iterable[Items], settings: LoaderSettings) -> None:
        self.loader = planned_loader(fetch, batches, settings)
        self._iterator: Iterator | None = None

    def take(self, items: Items) -> tuple[torch.Tensor, ...]:
        """The tensors of ``items``, which must be the plan's next batch."""
        if self._iterator is None:
            self._iterator = iter(self.loader)
        loaded, *tensors = next(self._iterator)
        if [_plain(item) for item in loaded] != [_plain(item) for item in items]:
            raise RuntimeError("input pipeline: the loaded batch is not the one the training loop asked for "
                               "(the batch plan and the loop disagree)")
        return tuple(tensors)


def _plain(item: tuple) -> tuple:
    """An item as plain Python values, to compare what was loaded with what was asked for."""
    return (int(item[0]), bool(item[1]), *(tuple(float(value) for value in crop) for crop in item[2:]))


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device``, asynchronously when the host tensor is pinned."""
    return tensor.to(device, non_blocking=tensor.is_pinned())


class LoadedLatents:
    """Stage 2's latent source fed by workers: ``fetch`` loads rows on the host (cached latents in their
    storage dtype, or decoded images) and ``convert`` makes float32 latents of them on the device (widening,
    or the encoder under the stage's precision). After :meth:`follow` the rows come prefetched in plan order;
    before, each :meth:`batch` fetches synchronously."""

    def __init__(self, fetch: Fetch, num_samples: int, convert: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device, settings: LoaderSettings) -> None:
        self.fetch, self.num_samples, self.convert, self.device = fetch, num_samples, convert, device
        self.settings, self._prefetched = settings, None

    def follow(self, batches: Iterable[Items]) -> None:
        """Load ``batches`` (the rest of the run's plan for this rank) ahead, in order."""
        self._prefetched = PrefetchedBatches(self.fetch, batches, self.settings)

    def batch(self, items: Items) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents (B, C, h, w) float32 on the device, labels (B,) int64)`` of ``items``."""
        rows, labels = self._prefetched.take(items) if self._prefetched is not None else self.fetch(items)
        return self.convert(to_device(rows, self.device)).float(), labels
