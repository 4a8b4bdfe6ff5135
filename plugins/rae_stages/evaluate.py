"""Stage ``evaluate``: registered ``metric`` components by name, results in ``metrics.json``.

Two families, told apart by the metric's own declaration (``Metric.paired``):

* reconstruction metrics (PSNR, SSIM, rFID): the RAE's reconstructions of the reference images against
  those images (``update(generated=recon, reference=original)``);
* generation metrics (gFID, IS, precision/recall): ``samples/samples.npz`` as ``generated``; metrics with an
  empty ``reference`` setting also get the reference images (``stages.evaluate.reference``: ADM ``.npz``
  ``arr_0`` or an image folder; else the held-out split) as ``reference``.

Every rank reads its contiguous share of the images batch by batch (never a whole collection); mergeable
metric states are reduced ("sum" all-reduced, "cat" gathered); under DDP a metric without one is an error.
``metrics.json`` is rewritten after every metric, and a failing metric is reported without losing the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from rae_framework.data.datasets import build_dataset
from rae_framework.data.image_rows import DatasetImages, ImageRows, NpzImages, image_batches, rank_span, reference_images
from rae_framework.engine import (DistContext, RunState, atomic_write_text, build_metric, build_rae, reconstruct,
                                  reduce_metric)
from rae_framework.errors import ConfigError, RAEError
from rae_framework.interfaces import Stage
from rae_stages.configs import EvaluateStage


def wants_reference_images(metric) -> bool:
    """Whether a generation metric compares against reference images fed by the engine: it has a
    ``reference`` setting left empty (FID, precision/recall); the Inception Score has none."""
    return hasattr(metric.config, "reference") and metric.config.reference is None


def _update_batches(metric, rows: ImageRows, span: range, role: str, batch_size: int, device: torch.device) -> None:
    for images in image_batches(rows, span, batch_size):
        metric.update(**{role: images.to(device)})


def evaluate_metric(name: str, metric, *, samples: ImageRows | None, reference: ImageRows,
                    reconstruct: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int,
                    context: DistContext) -> dict[str, float]:
    """One metric over this rank's contiguous shares, read batch by batch, reduced over ranks, computed."""
    metric.reset()
    shard = rank_span(len(reference), context.rank, context.world_size)
    if metric.paired:
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
    atomic_write_text(path, json.dumps({**existing, **results}, indent=2, sort_keys=True) + "\n")


def load_samples(path: Path) -> NpzImages | None:
    """``samples.npz``'s images, read by rows on demand, or None when absent."""
    return NpzImages(path, "samples") if path.is_file() else None


class Evaluate(Stage):
    """``evaluate``: every metric of ``stages.evaluate.metrics`` -> ``metrics.json`` (merged, one by one)."""

    Config = EvaluateStage

    def run(self, run: RunState) -> None:
        """Compute each metric; a failing one is logged and reported at the end, the others are kept."""
        stage = self.config
        reference = (reference_images(stage.reference, run.assembly.data.image_size) if stage.reference
                     else DatasetImages(build_dataset(run.assembly.data, "holdout")))
        samples = load_samples(run.out_dir / "samples" / "samples.npz")
        rae = build_rae(run) if run.has("encoder") and run.has("decoder") else None
        reconstruct_fn = (lambda images: reconstruct(rae, rae.decoder, images)) if rae is not None else None
        path, failures = run.output_path("metrics"), []
        if run.context.is_main:
            write_metrics(path, {})  # exists even when every metric fails
        for name in stage.metrics:
            try:
                values = evaluate_metric(name, build_metric(run.session, name), samples=samples,
                                         reference=reference, reconstruct=reconstruct_fn,
                                         batch_size=stage.batch_size, context=run.context)
            except RAEError as error:
                run.logger.warning(f"evaluate: metric '{name}' failed: {error}")
                failures.append(f"{name}: {error}")
                continue
            run.logger.info(f"evaluate: {name} = {values}")
            if run.context.is_main:
                write_metrics(path, values)
        run.context.barrier()
        if failures:
            raise RAEError(f"evaluate: {len(failures)} metric(s) failed (the others are in {path}): "
                           + "; ".join(failures))
