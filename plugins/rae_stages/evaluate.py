"""Stage ``evaluate``: registered ``metric`` components by name, results in ``metrics.json``.

Two families, told apart by the metric's own declaration (``Metric.paired``):

* reconstruction metrics (PSNR, SSIM, rFID): the RAE's reconstructions of the reference images against
  those images (``update(generated=recon, reference=original)``);
* generation metrics (gFID, sFID, IS, precision/recall): ``samples/samples.npz`` as ``generated`` (and its
  labels for metrics that declare ``needs_labels``, e.g. class accuracy). A metric with a ``reference``
  setting is built with ``stages.evaluate.reference`` and reads it itself (an ADM ``.npz``'s precomputed
  ``mu``/``sigma`` where it has them, as ADM's evaluator); a metric that asks for reference images
  (``Metric.wants_reference_images``) gets the held-out split when no reference is configured.

Images are read batch by batch, never a whole collection. The stage cuts each metric's work into batches of
``batch_size`` rows that any rank of any attempt may do (:mod:`rae_stages.metric_progress`): the ranks split
the batches not yet done, save the metric's mergeable state every ``save_every`` batches (and on
SIGTERM/SIGUSR1, then exit 75) under ``checkpoints/evaluate/<input hash>/<metric>/``, and merge the saved
states in batch order, so a killed evaluation continues where it was. Without a progress folder,
:func:`evaluate_metric` reduces in memory: each rank its contiguous share, states reduced over ranks ("sum"
all-reduced, "cat" gathered); under DDP a metric without a mergeable state is an error. ``metrics.json`` is
rewritten after every metric, and a failing metric is reported without losing the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.datasets import build_dataset
from rae_framework.data.image_rows import DatasetImages, ImageRows, NpzImages, image_batches, rank_span, reference_images
from rae_framework.engine import (DistContext, PreemptionNotice, RunState, atomic_write_text, build_metric, build_rae,
                                  progress_folder, reconstruct, reduce_metric, stop_if_noticed)
from rae_framework.errors import ConfigError, PreemptedError, RAEError
from rae_framework.interfaces import Stage
from rae_stages.configs import EvaluateStage
from rae_stages.metric_progress import MetricProgress, evaluate_saved


@dataclass(frozen=True)
class Pass:
    """One collection a metric reads and how its batches update the metric: ``feed(metric, images, first_row)``."""

    rows: ImageRows
    feed: Callable[[object, torch.Tensor, int], None]


def metric_passes(name: str, metric, *, samples: ImageRows | None, reference: ImageRows,
                  reconstruct: Callable[[torch.Tensor], torch.Tensor] | None, device: torch.device,
                  labels: torch.Tensor | None = None) -> list[Pass]:
    """What metric ``name`` reads, by its own declaration: the reconstructed reference images (paired), or
    the samples (with their ``labels`` for ``needs_labels``) and then, if it wants them, reference images."""
    if metric.paired:
        if reconstruct is None:
            raise ConfigError(f"metric '{name}' needs the autoencoder (encoder and decoder) to reconstruct")

        def paired(target, originals: torch.Tensor, first: int) -> None:
            originals = originals.to(device)
            target.update(generated=reconstruct(originals), reference=originals)
        return [Pass(reference, paired)]
    if samples is None:
        raise ConfigError(f"metric '{name}' needs samples: run the sample stage first")
    wanted = None
    if getattr(metric, "needs_labels", False):
        if labels is None:
            raise ConfigError(f"metric '{name}' needs the samples' labels (samples.npz arr_1)")
        wanted = labels

    def generated(target, images: torch.Tensor, first: int) -> None:
        extra = {} if wanted is None else {"labels": wanted[first:first + len(images)].to(device)}
        target.update(generated=images.to(device), **extra)
    passes = [Pass(samples, generated)]
    if metric.wants_reference_images:
        passes.append(Pass(reference, lambda target, images, first: target.update(reference=images.to(device))))
    return passes


def evaluate_metric(name: str, metric, *, samples: ImageRows | None, reference: ImageRows,
                    reconstruct: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int,
                    context: DistContext, labels: torch.Tensor | None = None,
                    progress: MetricProgress | None = None) -> dict[str, float]:
    """One metric over its collections, read batch by batch, reduced over ranks, computed. Metrics with
    ``needs_labels`` (class accuracy) also get the samples' ``labels`` ``(N,)``.

    Without ``progress``: each rank reads its contiguous share and the states are reduced in memory. With
    it: the work is cut into batches that any rank of any attempt may do, saved as it goes and continued
    after an interruption (:mod:`rae_stages.metric_progress`)."""
    passes = metric_passes(name, metric, samples=samples, reference=reference, reconstruct=reconstruct,
                           device=context.device, labels=labels)
    if progress is not None:
        units = [(chosen, start, min(start + batch_size, len(item.rows)))
                 for chosen, item in enumerate(passes) for start in range(0, len(item.rows), batch_size)]

        def feed(unit: int) -> None:
            chosen, start, stop = units[unit]
            passes[chosen].feed(metric, passes[chosen].rows.read(start, stop), start)
        return evaluate_saved(name, metric, len(units), feed, context, progress)
    metric.reset()
    for item in passes:
        span = rank_span(len(item.rows), context.rank, context.world_size)
        for first, images in zip(range(span.start, span.stop, batch_size), image_batches(item.rows, span, batch_size)):
            item.feed(metric, images, first)
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
        """Compute each metric, continuing from ``checkpoints/evaluate/<input hash>/``; a failing one is logged
        and reported at the end, the others are kept. SIGTERM/SIGUSR1 save the metric states and stop (exit 75)."""
        with PreemptionNotice() as notice:
            self._evaluate(run, notice)
            stop_if_noticed(notice, run.context, run.logger, "evaluate", "every metric was computed")

    def _evaluate(self, run: RunState, notice: PreemptionNotice) -> None:
        stage = self.config
        reference = (reference_images(stage.reference, run.assembly.data.image_size) if stage.reference
                     else DatasetImages(build_dataset(run.assembly.data, "holdout")))
        samples = load_samples(run.out_dir / "samples" / "samples.npz")
        labels = load_sample_labels(run.out_dir / "samples" / "samples.npz")
        rae = build_rae(run) if run.has("encoder") and run.has("decoder") else None
        reconstruct_fn = (lambda images: reconstruct(rae, rae.decoder, images)) if rae is not None else None
        path, failures, saved = run.output_path("metrics"), [], progress_folder(run, "evaluate")
        if run.context.is_main:
            write_metrics(path, {})  # exists even when every metric fails
        for name in stage.metrics:
            try:
                values = evaluate_metric(name, metric_for(run, name, stage.reference), samples=samples,
                                         reference=reference, reconstruct=reconstruct_fn,
                                         batch_size=stage.batch_size, context=run.context, labels=labels,
                                         progress=MetricProgress(saved / name, stage.save_every, notice, run.logger))
            except PreemptedError:
                raise
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
