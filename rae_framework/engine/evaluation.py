"""Evaluation stage: registered ``metric`` components by name, results in ``metrics.json``.

Two families, told apart by :func:`is_reconstruction_metric`:

* reconstruction metrics (PSNR, SSIM, rFID): the RAE's reconstructions of the reference images against
  those images (``update(generated=recon, reference=original)``);
* generation metrics (gFID, IS, precision/recall): ``samples/samples.npz`` as ``generated``; metrics with an
  empty ``reference`` setting also get the reference images (``stages.evaluate.reference``: ADM ``.npz``
  ``arr_0`` or an image folder; else the held-out split) as ``reference``.

Every rank reads its contiguous share of the images batch by batch (never a whole collection); mergeable
metric states are reduced ("sum" all-reduced, "cat" gathered); under DDP a metric without one is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

from rae_framework.data.image_rows import ImageRows, NpzImages, image_batches, rank_span
from rae_framework.engine.distributed import DistContext
from rae_framework.errors import ConfigError

RECONSTRUCTION_NAMES = frozenset({"psnr", "ssim", "rfid", "lpips"})


def is_reconstruction_metric(name: str, metric) -> bool:
    """Whether ``metric`` compares reconstructions with originals (a ``paired`` attribute decides if set)."""
    paired = getattr(metric, "paired", None)
    if isinstance(paired, bool):
        return paired
    return name in RECONSTRUCTION_NAMES or getattr(metric.config, "key", None) == "rfid"


def build_metric(session, name: str):
    """A metric by preset name (``gfid``, ``fid-tiny``, ...) or, failing that, by component name."""
    presets = {preset.name: preset for preset in session.presets.all("metric")}
    if name in presets:
        return session.build("metric", presets[name].component, preset=name)
    return session.build("metric", name)


def wants_reference_images(metric) -> bool:
    """Whether a generation metric compares against reference images fed by the engine: it has a
    ``reference`` setting left empty (FID, precision/recall); the Inception Score has none."""
    return hasattr(metric.config, "reference") and metric.config.reference is None


def reduce_metric(metric, context: DistContext):
    """Combine a metric's mergeable state across ranks (``state_tensors``/``state_reductions`` protocol)."""
    if not context.enabled:
        return metric
    if not hasattr(metric, "state_tensors"):
        raise ConfigError(f"metric {type(metric).__name__} has no mergeable state (state_tensors / "
                          f"load_state_tensors): under {context.world_size} processes it would report rank 0's "
                          "share only; run evaluate in one process or give the metric a mergeable state")
    reductions = getattr(metric, "state_reductions", {})
    reduced = {}
    for name, value in metric.state_tensors().items():
        if reductions.get(name) == "cat":
            parts: list = [None] * context.world_size
            dist.all_gather_object(parts, value.cpu())
            reduced[name] = torch.cat([part for part in parts if part.numel() > 0] or [value])
        else:
            reduced[name] = context.all_reduce_sum(value.double().clone())
    metric.load_state_tensors(reduced)
    return metric


def _update_batches(metric, rows: ImageRows, span: range, role: str, batch_size: int, device: torch.device) -> None:
    for images in image_batches(rows, span, batch_size):
        metric.update(**{role: images.to(device)})


def evaluate_metric(name: str, metric, *, samples: ImageRows | None, reference: ImageRows,
                    reconstruct: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int,
                    context: DistContext) -> dict[str, float]:
    """One metric over this rank's contiguous shares, read batch by batch, reduced over ranks, computed."""
    metric.reset()
    shard = rank_span(len(reference), context.rank, context.world_size)
    if is_reconstruction_metric(name, metric):
        if reconstruct is None:
            raise ConfigError(f"metric '{name}' needs the autoencoder (encoder and decoder) to reconstruct")
        for originals in image_batches(reference, shard, batch_size):
            originals = originals.to(context.device)
            metric.update(generated=reconstruct(originals), reference=originals)
    else:
        if samples is None:
            raise ConfigError(f"metric '{name}' needs samples: run the sample stage first")
        mine = rank_span(len(samples), context.rank, context.world_size)
        _update_batches(metric, samples, mine, "generated", batch_size, context.device)
        if wants_reference_images(metric):
            _update_batches(metric, reference, shard, "reference", batch_size, context.device)
    return reduce_metric(metric, context).compute()


def write_metrics(path: Path, results: dict[str, float]) -> None:
    """Merge ``results`` into ``metrics.json`` (atomic rewrite)."""
    existing = json.loads(path.read_text()) if path.is_file() else {}
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps({**existing, **results}, indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)


def load_samples(path: Path) -> NpzImages | None:
    """``samples.npz``'s images, read by rows on demand, or None when absent."""
    return NpzImages(path, "samples") if path.is_file() else None
