"""The run directory and what the stages share: paths, built components, outputs of earlier stages, stage
records and input hashes (derived from each stage's :class:`~rae_framework.stage.StageSpec`)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from rae_framework.engine.distributed import DistContext
from rae_framework.engine.logging import RunLogger
from rae_framework.files import atomic_write_text, file_sha256
from rae_framework.session import Session
from rae_framework.stage import StageSpec


def json_sha256(value: Any) -> str:
    """Hex sha256 of a canonical JSON dump."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class StageRecord:
    """``stages/<stage>/stage_state.json``: the input hash a stage ran with and its outputs' hashes."""

    stage: str
    input_hash: str
    outputs: dict[str, str]  # path relative to the run directory -> sha256
    finished_at: float

    @property
    def output_hash(self) -> str:
        """One hash over all outputs (what downstream stages hash)."""
        return json_sha256(self.outputs)

    @classmethod
    def create(cls, stage: str, input_hash: str, outputs: list[Path], out_dir: Path) -> StageRecord:
        """Hash ``outputs`` (files under ``out_dir``) into a record."""
        hashes = {str(path.relative_to(out_dir)): file_sha256(path) for path in outputs}
        return cls(stage, input_hash, hashes, time.time())


def without_paths(data: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """A copy of the nested ``data`` without the dotted ``paths`` (absent ones are ignored)."""
    data = copy.deepcopy(data)
    for path in paths:
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


class RunState:
    """What a stage runs with: the run directory, the assembly and its components (built once), the
    distributed context, the logger, whether to resume, the outputs of earlier stages and the records."""

    def __init__(self, out_dir: str | Path, assembly, context: DistContext, *, logger: RunLogger | None = None,
                 resume: bool = True) -> None:
        self.out_dir, self.assembly, self.context = Path(out_dir), assembly, context
        self.logger = logger or RunLogger(self.out_dir, enabled=False)
        self.resume = resume
        self.session: Session = assembly.session
        self._components: dict[str, Any] = {}

    # --- paths -------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: per-stage step folders and the final weights of each stage."""
        return self.out_dir / "checkpoints"

    def checkpoint_dir(self, stage: str) -> Path:
        """Step checkpoints of a training stage."""
        return self.checkpoints / stage

    def record_path(self, stage: str) -> Path:
        """Where a stage's record lives."""
        return self.out_dir / "stages" / stage / "stage_state.json"

    def spec(self, stage: str) -> StageSpec:
        """The spec of stage ``stage`` (configured in the assembly, or registered)."""
        if stage in self.assembly.stages:
            return self.assembly.stages.spec(stage)
        return self.session.registry.get("stage", stage).load_config_model().spec

    # --- outputs of the stages -----------------------------------------------------------------------
    def output_path(self, name: str) -> Path:
        """Where the output ``name`` of a stage this assembly runs lives (whether written yet or not)."""
        for stage in self.assembly.stages.enabled():
            relative = self.assembly.stages.spec(stage).outputs.get(name)
            if relative is not None:
                return self.out_dir / relative
        raise KeyError(f"no enabled stage of assembly '{self.assembly.name}' writes an output named '{name}'")

    def output(self, name: str) -> Path | None:
        """The file of output ``name`` when a stage this assembly runs wrote it, else None (a stage's
        outputs in the run directory are used only when the assembly runs that stage)."""
        try:
            path = self.output_path(name)
        except KeyError:
            return None
        return path if path.is_file() else None

    # --- components --------------------------------------------------------------------------------------
    def has(self, role: str) -> bool:
        """Whether the assembly defines ``role``."""
        return role in self.assembly.components

    def component(self, role: str) -> Any:
        """The component of ``role``, built once per run."""
        if role not in self._components:
            # Seeded per role: randomly initialised weights do not depend on the order of builds.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(json_sha256([self.assembly.seed, role])[:15], 16))
                self._components[role] = self.assembly.build(role, session=self.session)
        return self._components[role]

    def forget(self, role: str) -> None:
        """Drop a cached component (e.g. after its weights were retrained on disk)."""
        self._components.pop(role, None)

    def optional(self, role: str) -> Any:
        """The component of ``role`` or None when the assembly does not define it."""
        return self.component(role) if self.has(role) else None

    # --- records and hashes ------------------------------------------------------------------------------
    def config_sections(self, stage: str) -> dict[str, Any]:
        """The resolved assembly parts ``stage`` depends on (its spec says which): the seed (randomly
        initialised components depend on it), sections, component roles, its own and other stages' settings,
        less the paths the spec ``ignores``."""
        resolved, spec = self.assembly.resolved(), self.spec(stage)
        data = {section: resolved[section] for section in ("seed", *spec.sections)}
        data["components"] = {role: resolved["components"].get(role) for role in (*spec.roles, *spec.optional_roles)}
        data["stage"] = resolved["stages"].get(stage)
        data["settings_of"] = {other: resolved["stages"].get(other) for other in spec.settings_of}
        return without_paths(data, spec.ignores)

    def input_hash(self, stage: str) -> str:
        """Hash of the stage's config sections and its upstream stages' output hashes."""
        upstream = {name: (record.output_hash if (record := self.record(name)) else None)
                    for name in self.spec(stage).reads}
        return json_sha256({"config": self.config_sections(stage), "upstream": upstream})

    def record(self, stage: str) -> StageRecord | None:
        """The stage's record, or None when it never finished here."""
        path = self.record_path(stage)
        return StageRecord(**json.loads(path.read_text())) if path.is_file() else None

    def changed_outputs(self, record: StageRecord) -> list[str]:
        """The outputs the record names (relative paths) that are missing or no longer have the recorded hash."""
        return [name for name, digest in record.outputs.items()
                if not (self.out_dir / name).is_file() or file_sha256(self.out_dir / name) != digest]

    def outputs_exist(self, record: StageRecord) -> bool:
        """Whether every output the record names is still on disk with the recorded hash."""
        return not self.changed_outputs(record)

    def write_record(self, record: StageRecord) -> None:
        """Atomically write a stage record."""
        atomic_write_text(self.record_path(record.stage), json.dumps(asdict(record), indent=2, sort_keys=True))

    def invalidate_stale_checkpoints(self, stage: str, key: str, logger, *, fresh: bool = False) -> None:
        """Set aside step checkpoints written with other inputs (or all of them when starting ``fresh``),
        so that a resume never mixes configurations and a fresh start never resumes from older steps."""
        folder = self.checkpoint_dir(stage)
        marker = folder / "inputs.json"
        if self.context.is_main and folder.is_dir():
            old = json.loads(marker.read_text()).get("input_hash") if marker.is_file() else None
            if old != key or (fresh and any(folder.glob("step_*"))):
                target = folder.with_name(f"{stage}.stale-{(old or 'unknown')[:12]}-{time.time_ns()}")
                os.replace(folder, target)
                reason = "inputs changed" if old != key else "starting fresh (resume off)"
                logger.info(f"{stage}: {reason}; previous checkpoints moved to {target}")
        if self.context.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(marker, json.dumps({"input_hash": key}))
        self.context.barrier()

    def read_metrics(self) -> dict[str, float]:
        """Contents of ``metrics.json`` (empty when absent)."""
        path = self.out_dir / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}
