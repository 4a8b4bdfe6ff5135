"""Stage ``evaluate``: registered ``metric`` components by name, results in ``metrics.json``.

Two families, told apart by the metric's own declaration (``Metric.paired``):

* reconstruction metrics (PSNR, SSIM, rFID): the RAE's reconstructions of the reference images against
  those images (``update(generated=recon, reference=original)``);
* generation metrics (gFID, sFID, IS, precision/recall): ``samples/samples.npz`` as ``generated`` (and its
  labels for metrics that declare ``needs_labels``, e.g. class accuracy). A metric with a ``reference``
  setting is built with ``stages.evaluate.reference`` and reads it itself (an ADM ``.npz``'s precomputed
  ``mu``/``sigma`` where it has them, as ADM's evaluator); a metric that asks for reference images
  (``Metric.wants_reference_images``) gets the held-out split when no reference is configured.

Every rank reads its contiguous share of the images batch by batch (never a whole collection); mergeable
metric states are reduced ("sum" all-reduced, "cat" gathered); under DDP a metric without one is an error.
``metrics.json`` is rewritten after every metric, and a failing metric is reported without losing the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.datasets import build_dataset
from rae_framework.data.image_rows import DatasetImages, ImageRows, NpzImages, image_batches, rank_span, reference_images
from rae_framework.engine import (DistContext, RunState, atomic_write_text, build_metric, build_rae, reconstruct,
                                  reduce_metric)
from rae_framework.errors import ConfigError, RAEError
from rae_framework.interfaces import Stage
from rae_stages.configs import EvaluateStage


def _update_batches(metric, rows: ImageRows, span: range, role: str, batch_size: int, device: torch.device,
                    labels: torch.Tensor | None = None) -> None:
    for offset, images in zip(range(span.start, span.stop, batch_size), image_batches(rows, span, batch_size)):
        extra = {} if labels is None else {"labels": labels[offset:offset + len(images)].to(device)}
        metric.update(**{role: images.to(device)}, **extra)


def evaluate_metric(name: str, metric, *, samples: ImageRows | None, reference: ImageRows,
                    reconstruct: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int,
                    context: DistContext, labels: torch.Tensor | None = None) -> dict[str, float]:
    """One metric over this rank's contiguous shares, read batch by batch, reduced over ranks, computed.
    Metrics with ``needs_labels`` (class accuracy) also get the samples' ``labels`` ``(N,)``."""
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
        wanted = None
        if getattr(metric, "needs_labels", False):
            if labels is None:
                raise ConfigError(f"metric '{name}' needs the samples' labels (samples.npz arr_1)")
            wanted = labels
        mine = rank_span(len(samples), context.rank, context.world_size)
        _update_batches(metric, samples, mine, "generated", batch_size, context.device, wanted)
        if metric.wants_reference_images:
            _update_batches(metric, reference, shard, "reference", batch_size, context.device)
    return reduce_metric(metric, context).compute()


def write_metrics(path: Path, results: dict[str, float]) -> None:
    """Merge ``results`` into ``metrics.json`` (atomic rewrite)."""
    existing = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_text(path, json.dumps({**existing, **results}, indent=2, sort_keys=True) + "\n")


def load_sample_labels(path: Path) -> torch.Tensor | None:
    """``samples.npz``'s labels ``(N,)`` int64 (``arr_1``, small), or None when absent."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        return torch.from_numpy(data["arr_1"].astype(np.int64)) if "arr_1" in data else None


def metric_for(run: RunState, name: str, reference: str | None):
    """Metric ``name``; a generation metric with a ``reference`` setting left empty gets
    ``stages.evaluate.reference`` and reads it itself (ADM statistics where the .npz has them)."""
    metric = build_metric(run.session, name)
    if metric.paired or reference is None or getattr(metric.config, "reference", "absent") is not None:
        return metric
    return build_metric(run.session, name, {"reference": reference})


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
        labels = load_sample_labels(run.out_dir / "samples" / "samples.npz")
        rae = build_rae(run) if run.has("encoder") and run.has("decoder") else None
        reconstruct_fn = (lambda images: reconstruct(rae, rae.decoder, images)) if rae is not None else None
        path, failures = run.output_path("metrics"), []
        if run.context.is_main:
            write_metrics(path, {})  # exists even when every metric fails
        for name in stage.metrics:
            try:
                values = evaluate_metric(name, metric_for(run, name, stage.reference), samples=samples,
                                         reference=reference, reconstruct=reconstruct_fn,
                                         batch_size=stage.batch_size, context=run.context, labels=labels)
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
