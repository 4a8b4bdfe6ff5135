"""Metrics as the stages use them: built by preset or component name, their states reduced across ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist

from rae_framework.engine.distributed import DistContext
from rae_framework.errors import ConfigError


def build_metric(session, name: str):
    """A metric by preset name (``gfid``, ``fid-tiny``, ...) or, failing that, by component name."""
    presets = {preset.name: preset for preset in session.presets.all("metric")}
    if name in presets:
        return session.build("metric", presets[name].component, preset=name)
    return session.build("metric", name)


def reduce_metric(metric, context: DistContext):
    """Combine a metric's mergeable state across ranks (the ``Metric`` state protocol: ``state_tensors``,
    ``state_reductions`` "sum" -> all-reduce, "cat" -> gather, ``load_state_tensors``). Under DDP a metric
    without a mergeable state is an error: its result would be rank 0's shard only."""
    if not context.enabled:
        return metric
    if not getattr(metric, "state_reductions", None):
        raise ConfigError(f"metric {type(metric).__name__} declares no mergeable state (state_reductions), so it "
                          f"cannot be computed across {context.world_size} processes; run it in one process")
    reduced = {}
    for name, value in metric.state_tensors().items():
        if metric.state_reductions[name] == "cat":
            parts: list = [None] * context.world_size
            dist.all_gather_object(parts, value.cpu())
            reduced[name] = torch.cat([part for part in parts if part.numel() > 0] or [value])
        else:
            reduced[name] = context.all_reduce_sum(value.double().clone())
    metric.load_state_tensors(reduced)
    return metric
