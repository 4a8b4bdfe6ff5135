"""Evaluation stage: registered ``metric`` components by name, results in ``metrics.json``.

Two families, told apart by :func:`is_reconstruction_metric`:

* reconstruction metrics (PSNR, SSIM, rFID): the RAE's reconstructions of the reference images against
  those images (``update(generated=recon, reference=original)``);
* generation metrics (gFID, IS, precision/recall): ``samples/samples.npz`` as ``generated``; metrics with an
  empty ``reference`` setting also get the reference images (``stages.evaluate.reference``: ADM ``.npz``
  ``arr_0`` or an image folder; else the held-out split) as ``reference``.

Every rank handles a shard; mergeable metric states are reduced ("sum" all-reduced, "cat" gathered).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from rae_framework.data.datasets import center_crop_arr, list_image_folder
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


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


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


def reduce_metric(metric, context: DistContext):
    """Combine a metric's mergeable state across ranks (``state_tensors``/``state_reductions`` protocol)."""
    if not context.enabled or not hasattr(metric, "state_tensors"):
        return metric
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
    if is_reconstruction_metric(name, metric):
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
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps({**existing, **results}, indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)


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
