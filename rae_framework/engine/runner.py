"""``run_assembly``: execute the enabled stages of an assembly in order, skipping those already done.

Stage order: train_decoder, latent_stats, train_denoiser, sample, evaluate. A stage is skipped when its
``stages/<stage>.json`` records the same input hash (the resolved config sections it reads + the output
hashes of the stages it consumes) and its outputs still exist. Interrupted training stages resume from
their newest checkpoint. Under ``torchrun`` every rank runs this; rank 0 writes the shared files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rae_framework.engine import stages as stage_impl
from rae_framework.engine.distributed import DistContext, init_distributed
from rae_framework.engine.logging import RunLogger
from rae_framework.engine.run_state import RunState, StageRecord
from rae_framework.errors import ConfigError

STAGE_ORDER = ("train_decoder", "latent_stats", "train_denoiser", "sample", "evaluate")
TRAINING_STAGES = ("train_decoder", "train_denoiser")


@dataclass
class RunResult:
    """What a call of :func:`run_assembly` did."""

    out_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def selected_stages(assembly, stages: list[str] | None) -> list[str]:
    """Enabled stages of the assembly in order, restricted to ``stages`` when given."""
    unknown = sorted(set(stages or ()) - set(STAGE_ORDER))
    if unknown:
        raise ConfigError(f"Unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGE_ORDER)}")
    chosen = []
    for name in STAGE_ORDER:
        settings = getattr(assembly.stages, name)
        if stages is not None and name not in stages:
            continue
        if settings is None or not settings.enabled:
            if stages is not None:
                raise ConfigError(f"stage '{name}' is not enabled in assembly '{assembly.name}'")
            continue
        chosen.append(name)
    return chosen


def seed_everything(seed: int, rank: int) -> None:
    """Global torch/numpy/python RNGs (per rank); the loops' own draws use seeded generators."""
    value = seed + 1_000_003 * rank
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def run_assembly(assembly, out_dir: str | Path, *, resume: bool = True, stages: list[str] | None = None,
                 context: DistContext | None = None) -> RunResult:
    """Run ``assembly``'s stages into ``out_dir`` (see the module docstring); returns what ran."""
    out_dir = Path(out_dir)
    context = context or init_distributed()
    chosen = selected_stages(assembly, stages)
    logger = RunLogger(out_dir, enabled=context.is_main)
    state = RunState(out_dir, assembly, context)
    result = RunResult(out_dir)
    try:
        if context.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "assembly.yaml").write_text(assembly.to_yaml())
        context.barrier()
        seed_everything(assembly.seed, context.rank)
        for name in chosen:
            _run_stage(name, state, logger, resume, result)
    finally:
        logger.close()
    result.metrics = state.read_metrics()
    return result


def _run_stage(name: str, state: RunState, logger: RunLogger, resume: bool, result: RunResult) -> None:
    key = state.input_hash(name)
    record = state.record(name)
    if record is not None and record.input_hash == key and state.outputs_exist(record):
        logger.info(f"{name}: skipped (outputs up to date, input hash {key[:12]})")
        result.skipped.append(name)
        return
    if name in TRAINING_STAGES:
        state.invalidate_stale_checkpoints(name, key, logger, fresh=not resume)
    logger.info(f"{name}: starting (input hash {key[:12]})")
    outputs: list[Path] = getattr(stage_impl, f"run_{name}")(state, logger, resume=resume)
    if state.context.is_main:
        state.write_record(StageRecord.create(name, key, outputs, state.out_dir))
    state.context.barrier()
    logger.info(f"{name}: done")
    result.ran.append(name)
