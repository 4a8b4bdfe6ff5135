"""``run_assembly``: execute the enabled stages of an assembly in their registered order, skipping those
already done.

The stages are registered components (kind ``stage``); everything here is derived from their specs
(:class:`~rae_framework.stage.StageSpec`). A stage is skipped when its record
``stages/<stage>/stage_state.json`` holds the same input hash (the resolved assembly parts its spec names +
the output hashes of the stages it reads) and its outputs still exist. Resumable stages continue from their
newest step checkpoint. Under ``torchrun`` every rank runs this; rank 0 holds the run directory's lock and
writes the shared files.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.datasets import class_names
from rae_framework.engine.distributed import DistContext, init_distributed
from rae_framework.engine.logging import RunLogger
from rae_framework.engine.run_lock import hold_run_lock
from rae_framework.engine.run_state import RunState, StageRecord
from rae_framework.engine.stop_signals import SignalStop, stop_on_signal
from rae_framework.errors import ConfigError, PreemptedError, RAEError
from rae_framework.files import atomic_write_text
from rae_framework.registry import did_you_mean
from rae_framework.stage import STAGE_KIND


@dataclass
class RunResult:
    """What a call of :func:`run_assembly` did."""

    out_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)  # output name -> file, of the stages that ran or were up to date

    def report(self, title: str) -> str:
        """``<title>: <out_dir> (ran: ...; up to date: ...)``, then a line per output file and per metric."""
        lines = [f"{title}: {self.out_dir} (ran: {', '.join(self.ran) or 'nothing'}; "
                 f"up to date: {', '.join(self.skipped) or 'nothing'})"]
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        lines += [f"  metric {name} = {value:.6g}" for name, value in sorted(self.metrics.items())]
        return "\n".join(lines)


def selected_stages(assembly, stages: list[str] | None) -> list[str]:
    """Enabled stages of the assembly in run order, restricted to ``stages`` when given."""
    known = assembly.session.registry.names(STAGE_KIND)
    for name in stages or ():
        if name not in known:
            raise ConfigError(f"--stage {name}: unknown stage.{did_you_mean(name, known)} "
                              f"Registered stages: {', '.join(known)}")
        if not assembly.stages.is_enabled(name):
            raise ConfigError(f"--stage {name}: stage '{name}' is not enabled in assembly '{assembly.name}'")
    return [name for name in assembly.stages.enabled() if stages is None or name in stages]


def check_upstream(state: RunState, chosen: list[str]) -> None:
    """A stage run without the stages it reads (``--stage``) needs their finished outputs in the run directory."""
    for name in chosen:
        for upstream in state.spec(name).reads:
            if upstream in chosen or not state.assembly.stages.is_enabled(upstream):
                continue
            record = state.record(upstream)
            if record is None or not state.outputs_exist(record):
                raise ConfigError(f"--stage {name}: it reads the outputs of stage '{upstream}', which has not "
                                  f"finished in {state.out_dir}; run '{upstream}' first (or run without --stage)")


def write_class_names(out_dir: Path, assembly) -> None:
    """``classes.json``: the dataset's class names (index = label), so that ``rae sample`` and ``load_run``
    take labels by name; nothing when the data is not on this machine."""
    names = class_names(assembly.data)
    if names is not None:
        atomic_write_text(out_dir / "classes.json", json.dumps(names))


def seed_everything(seed: int, rank: int) -> None:
    """Global torch/numpy/python RNGs (per rank); the loops' own draws use seeded generators."""
    value = seed + 1_000_003 * rank
    torch.manual_seed(value % 2**64)  # torch takes a uint64 (a negative seed wraps there as torch wraps it)
    np.random.seed(value % 2**32)
    random.seed(value)


def run_assembly(assembly, out_dir: str | Path, *, resume: bool = True, stages: list[str] | None = None,
                 context: DistContext | None = None, lock_held: bool = False) -> RunResult:
    """Run ``assembly``'s stages into ``out_dir`` (see the module docstring); returns what ran.

    ``resume=False`` starts over: finished stages run again and training stages start from step 0. The run
    holds the directory's lock (:mod:`~rae_framework.engine.run_lock`) before it writes anything there, and
    raises :class:`~rae_framework.errors.RunDirectoryLockedError` when another process holds it;
    ``lock_held=True``: the caller holds it already (``rae sweep``, around a point's adoption of stages).
    A scheduler's notice (SIGTERM, SIGUSR1, SIGUSR2) stops the run with a
    :class:`~rae_framework.errors.PreemptedError` wherever it arrives (:mod:`~rae_framework.engine.stop_signals`).
    """
    out_dir = Path(out_dir)
    context = context or init_distributed()
    chosen = selected_stages(assembly, stages)
    try:
        with stop_on_signal(), contextlib.nullcontext() if lock_held else hold_run_lock(out_dir, context):
            return _run_locked(assembly, out_dir, chosen, resume, context)
    except SignalStop as stop:
        raise stop.preempted() from None


def _run_locked(assembly, out_dir: Path, chosen: list[str], resume: bool, context: DistContext) -> RunResult:
    logger = RunLogger(out_dir, enabled=context.is_main, tensorboard=False)
    state = RunState(out_dir, assembly, context, logger=logger, resume=resume)
    check_upstream(state, chosen)
    result, status = RunResult(out_dir), "failed"
    try:
        if context.is_main:
            atomic_write_text(out_dir / "assembly.yaml", assembly.to_yaml())
            write_class_names(out_dir, assembly)
            logger.start_trackers(assembly, resume=resume)
            for warning in assembly.warnings:
                logger.warning(warning)
        context.barrier()
        seed_everything(assembly.seed, context.rank)
        for name in chosen:
            try:
                _run_stage(name, state, result)
            except SignalStop as stop:
                raise stop.during(name) from None
        result.metrics = state.read_metrics()
        if result.metrics:
            logger.metrics(result.metrics, out_dir / "metrics.json")
        status = "finished"
    except SignalStop as stop:
        status = "killed"
        logger.info(str(stop.preempted()))
        raise
    except PreemptedError:  # the stage logged what it saved
        status = "killed"
        raise
    finally:
        logger.close(status)
    return result


def _run_stage(name: str, state: RunState, result: RunResult) -> None:
    key, spec, logger = state.input_hash(name), state.spec(name), state.logger
    record = state.record(name)
    if state.resume and record is not None and record.input_hash == key:
        changed = state.changed_outputs(record)
        if not changed:
            logger.info(f"{name}: skipped, outputs up to date (input hash {key[:12]})")
            result.skipped.append(name)
            _collect_outputs(state, spec, result)
            return
        logger.warning(f"{name}: finished before, but since then {', '.join(changed)} went missing or changed (sha256 "
                       f"differs from {state.record_path(name)}): the stage runs again to write it")
    if spec.resumable:
        state.invalidate_stale_checkpoints(name, key, logger, fresh=not state.resume)
    logger.info(f"{name}: starting - {spec.summary} (input hash {key[:12]})")
    started = time.monotonic()
    stage = state.session.build_from_config(state.session.registry.get(STAGE_KIND, name), state.assembly.stages[name])
    stage.run(state)
    outputs = _collect_outputs(state, spec, result)
    if state.context.is_main:
        missing = [str(path) for path in outputs if not path.is_file()]
        if missing:
            raise RAEError(f"stage '{name}' finished without writing its outputs: {', '.join(missing)}")
        state.write_record(StageRecord.create(name, key, outputs, state.out_dir))
    state.context.barrier()
    written = ", ".join(str(path.relative_to(state.out_dir)) for path in outputs) or "no files"
    logger.info(f"{name}: done in {_seconds(time.monotonic() - started)} -> {written}")
    result.ran.append(name)


def _collect_outputs(state: RunState, spec, result: RunResult) -> list[Path]:
    paths = {output: state.out_dir / relative for output, relative in spec.outputs.items()}
    result.outputs.update(paths)
    return list(paths.values())


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
