"""Stage ``evaluate``: registered ``metric`` components by name, results in ``metrics.json``.

Two families, told apart by the metric's own declaration (``Metric.paired``):

* reconstruction metrics (PSNR, SSIM, rFID): the RAE's reconstructions of the reference images against
  those images (``update(generated=recon, reference=original)``);
* generation metrics (gFID, IS, precision/recall): ``samples/samples.npz`` as ``generated``; metrics with an
  empty ``reference`` setting also get the reference images (``stages.evaluate.reference``: ADM ``.npz``
  ``arr_0`` or an image folder; else the held-out split) as ``reference``.

Every rank handles a shard; mergeable metric states are reduced ("sum" all-reduced, "cat" gathered).
``metrics.json`` is rewritten after every metric, and a failing metric is reported without losing the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.datasets import center_crop_arr, list_image_folder
from rae_framework.engine import (DistContext, RunState, atomic_write_text, build_metric, build_rae,
                                  holdout_images, reconstruct, reduce_metric, uint8_to_tensor)
from rae_framework.errors import ConfigError, RAEError
from rae_framework.interfaces import Stage
from rae_stages.configs import EvaluateStage


def wants_reference_images(metric) -> bool:
    """Whether a generation metric compares against reference images fed by the engine: it has a
    ``reference`` setting left empty (FID, precision/recall); the Inception Score has none."""
    return hasattr(metric.config, "reference") and metric.config.reference is None


def load_reference_images(path: str | Path, image_size: int) -> torch.Tensor:
    """Reference images ``(N, 3, S, S)`` from an ADM ``.npz`` (``arr_0``) or a folder (centre-cropped)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            if "arr_0" not in data:
                raise ConfigError(f"stages.evaluate.reference: {path} has no 'arr_0' images (ADM layout)")
            return uint8_to_tensor(data["arr_0"])
    from PIL import Image

    files = list_image_folder(path)[0] if any(p.is_dir() for p in path.iterdir()) else sorted(path.iterdir())
    arrays = []
    for file in files:
        with Image.open(file) as image:
            arrays.append(np.asarray(center_crop_arr(image.convert("RGB"), image_size)))
    return uint8_to_tensor(np.stack(arrays))


def _update_batches(metric, tensors: torch.Tensor, role: str, batch_size: int, device: torch.device,
                    labels: torch.Tensor | None = None) -> None:
    for start in range(0, tensors.shape[0], batch_size):
        extra = {} if labels is None else {"labels": labels[start:start + batch_size].to(device)}
        metric.update(**{role: tensors[start:start + batch_size].to(device)}, **extra)


def evaluate_metric(name: str, metric, *, samples: torch.Tensor | None, reference: torch.Tensor,
                    reconstruct: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int,
                    context: DistContext, labels: torch.Tensor | None = None) -> dict[str, float]:
    """One metric over this rank's shards, reduced over ranks, computed. Metrics with ``needs_labels`` (class
    accuracy) also get the samples' ``labels`` ``(N,)``: ``update(generated=..., labels=...)``."""
    metric.reset()
    shard = reference[context.rank::context.world_size]
    if metric.paired:
        if reconstruct is None:
            raise ConfigError(f"metric '{name}' needs the autoencoder (encoder and decoder) to reconstruct")
        for start in range(0, shard.shape[0], batch_size):
            originals = shard[start:start + batch_size].to(context.device)
            metric.update(generated=reconstruct(originals), reference=originals)
    else:
        if samples is None:
            raise ConfigError(f"metric '{name}' needs samples: run the sample stage first")
        wanted = None
        if getattr(metric, "needs_labels", False):
            if labels is None:
                raise ConfigError(f"metric '{name}' needs the samples' labels (samples.npz arr_1)")
            wanted = labels[context.rank::context.world_size]
        _update_batches(metric, samples[context.rank::context.world_size], "generated", batch_size, context.device,
                        wanted)
        if wants_reference_images(metric):
            _update_batches(metric, shard, "reference", batch_size, context.device)
    return reduce_metric(metric, context).compute()


def write_metrics(path: Path, results: dict[str, float]) -> None:
    """Merge ``results`` into ``metrics.json`` (atomic rewrite)."""
    existing = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_text(path, json.dumps({**existing, **results}, indent=2, sort_keys=True) + "\n")


def load_sample_labels(path: Path) -> torch.Tensor | None:
    """``samples.npz``'s labels ``(N,)`` int64 (``arr_1``), or None when absent."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        return torch.from_numpy(data["arr_1"].astype(np.int64)) if "arr_1" in data else None


def load_samples(path: Path) -> torch.Tensor | None:
    """``samples.npz``'s images as ``(N, 3, H, W)`` floats, or None when absent."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        return uint8_to_tensor(data["arr_0"])


class Evaluate(Stage):
    """``evaluate``: every metric of ``stages.evaluate.metrics`` -> ``metrics.json`` (merged, one by one)."""

    Config = EvaluateStage

    def run(self, run: RunState) -> None:
        """Compute each metric; a failing one is logged and reported at the end, the others are kept."""
        stage = self.config
        reference = (load_reference_images(stage.reference, run.assembly.data.image_size)
                     if stage.reference else holdout_images(run))
        samples = load_samples(run.out_dir / "samples" / "samples.npz")
        labels = load_sample_labels(run.out_dir / "samples" / "samples.npz")
        rae = build_rae(run) if run.has("encoder") and run.has("decoder") else None
        reconstruct_fn = (lambda images: reconstruct(rae, rae.decoder, images)) if rae is not None else None
        path, failures = run.output_path("metrics"), []
        if run.context.is_main:
            write_metrics(path, {})  # exists even when every metric fails
        for name in stage.metrics:
            try:
                values = evaluate_metric(name, build_metric(run.session, name), samples=samples,
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
