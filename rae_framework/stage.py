"""Stages as registered components (kind ``stage``): the torch-free half, read by validate, list and the runner.

A stage is what a run *does* (train the decoder, compute latent statistics, sample, ...), registered by a
plugin exactly like an encoder::

    registrar.add("stage", "distill_encoder", factory="my_plugin.distill:DistillEncoder",
                  config="my_plugin.distill:DistillEncoderConfig")

Its Config subclasses :class:`StageConfig` and declares the stage's :class:`StageSpec` as the class attribute
``spec``: where it runs in the order, the component roles it needs, the stages whose outputs it reads, the
files it writes and whether it resumes from step checkpoints. The runner, the assembly's stage rules, the
input hash that decides whether a stage is up to date, the record paths, the schema of the ``stages``
section and the CLI's ``--stage`` choices are all derived from these specs. Its class implements
:class:`rae_framework.interfaces.Stage` (``run``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from rae_framework.config import Component, ComponentConfig

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor
    from torch.nn import Module

    from rae_framework.engine.training import TrainingJob
    from rae_framework.session import Session

STAGE_KIND = "stage"


@dataclass(frozen=True)
class StageSpec:
    """What a stage needs and produces; the runner and the assembly derive everything from it.

    ``outputs`` maps an output's name to its path relative to the run directory; other stages ask for an
    output by name (``RunState.output("decoder_ema")``), so no stage knows another's file layout.
    """

    order: int  # position in a run; first-party stages use 100 (train_decoder) ... 500 (evaluate)
    summary: str = ""
    roles: tuple[str, ...] = ()  # component roles that must be present (a role named after a kind is of it)
    optional_roles: tuple[str, ...] = ()  # roles used when present (part of the input hash)
    sections: tuple[str, ...] = ()  # assembly sections read besides the seed: 'autoencoder', 'data'
    reads: tuple[str, ...] = ()  # stages whose outputs this stage consumes (their output hashes are hashed)
    settings_of: tuple[str, ...] = ()  # other stages whose settings this one depends on
    # dotted paths inside its roles and sections that the stage does not depend on, left out of its input hash
    # (e.g. 'components.decoder' for a stage that builds the autoencoder only to encode)
    ignores: tuple[str, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> path relative to the run directory
    resumable: bool = False  # writes step checkpoints under checkpoints/<stage>/ and resumes from them


@dataclass(frozen=True)
class StageProblem:
    """A problem a stage's :meth:`StageConfig.check` finds: ``path`` inside ``stages.<name>`` (or absolute
    when it starts with ``components``), a message, and whether it is only a warning."""

    path: tuple[str | int, ...]
    message: str
    warning: bool = False
    value: Any = None


@dataclass(frozen=True)
class StageCheckContext:
    """What a stage's cross-checks see: the resolved components (role -> ComponentSpec), the roles the file
    declares (also those whose params are invalid), the other stages' settings and the session."""

    components: Mapping[str, Any]
    declared_roles: frozenset[str]
    stages: Stages
    session: Session


class StageConfig(ComponentConfig):
    """Base of every stage's settings (the value under ``stages.<name>`` in an assembly)."""

    spec: ClassVar[StageSpec]

    enabled: bool = Field(True, description="Run this stage (false keeps its settings but skips it).")

    def check(self, context: StageCheckContext) -> list[StageProblem]:
        """Cross-checks against the rest of the assembly (known metric names, ...); none by default."""
        del context
        return []


class TrainingStageConfig(StageConfig):
    """What every training stage shares: its length, logging and step checkpoints (what the engine's
    training loop, :func:`rae_framework.engine.train`, reads)."""

    steps: int = Field(1000, gt=0, description="Optimiser steps.")
    checkpoint_every: int = Field(500, gt=0, description="Steps between checkpoints.")
    keep_last: int = Field(2, gt=0, description="Checkpoints kept (besides those of save_at).")
    save_at: list[int] = Field([], description="Steps whose checkpoints are also written and never pruned, e.g. "
                                               "the reference's autoguidance guide, a DiT^DH-S at epoch 14 while "
                                               "its LR is still constant.")
    log_every: int = Field(10, gt=0, description="Steps between rows in metrics.csv / TensorBoard.")

    @model_validator(mode="after")
    def _save_at_within_the_run(self) -> TrainingStageConfig:
        outside = [step for step in self.save_at if not 0 < step <= self.steps]
        if outside:
            raise ValueError(f"save_at steps {outside} are outside 1..steps ({self.steps})")
        return self

    def checkpoint_due(self, step: int) -> bool:
        """Whether step ``step`` (1-based, just finished) writes a checkpoint."""
        return step % self.checkpoint_every == 0 or step == self.steps or step in self.save_at

    def log_due(self, step: int) -> bool:
        """Whether step ``step`` (1-based, just finished) logs its scalars."""
        return step % self.log_every == 0 or step == self.steps


class Stages(Mapping[str, StageConfig]):
    """The validated ``stages`` section: stage name -> settings, in run order (by ``spec.order``).

    Attribute access reads a stage's settings or None when the assembly does not configure it
    (``assembly.stages.train_denoiser``).
    """

    def __init__(self, configs: Mapping[str, StageConfig] | None = None) -> None:
        ordered = sorted((configs or {}).items(), key=lambda item: (type(item[1]).spec.order, item[0]))
        self._configs: dict[str, StageConfig] = dict(ordered)

    def __getitem__(self, name: str) -> StageConfig:
        return self._configs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._configs)

    def __len__(self) -> int:
        return len(self._configs)

    def __getattr__(self, name: str) -> StageConfig | None:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._configs.get(name)

    def __repr__(self) -> str:
        return f"Stages({', '.join(self._configs)})"

    def spec(self, name: str) -> StageSpec:
        """The spec of a configured stage."""
        return type(self._configs[name]).spec

    def enabled(self) -> list[str]:
        """Names of the enabled stages, in run order."""
        return [name for name, config in self._configs.items() if config.enabled]

    def is_enabled(self, name: str) -> bool:
        """Whether the assembly runs stage ``name``."""
        config = self._configs.get(name)
        return config is not None and config.enabled

    def dump(self) -> dict[str, Any]:
        """Plain JSON data (``stages`` of a resolved assembly)."""
        return {name: config.model_dump(mode="json") for name, config in self._configs.items()}


class Stage(Component, ABC):
    """A step of a run (train the decoder, sample, ...), registered under kind ``stage``; also exported as
    ``rae_framework.interfaces.Stage``. Torch-free, so that a stage's one module can hold its Config too.

    Built from its settings, a :class:`StageConfig` whose class carries the stage's :class:`StageSpec`; the
    engine calls :meth:`run` on every rank of a run.
    """

    @abstractmethod
    def run(self, run) -> None:
        """Do the work of this stage for ``run`` (a :class:`rae_framework.engine.RunState`: the run directory,
        the assembly's components, the distributed context, the logger, ``resume`` and the outputs of earlier
        stages); rank 0 writes every file named in ``spec.outputs``."""


class TrainingTask(ABC):
    """What a training stage gives the engine's loop, :func:`rae_framework.engine.train` (torch-free here, so
    that a stage's one module can hold its Config, its task and its Stage). ``state`` is any object with an
    integer ``step`` (optimiser steps done): the loop restores it on resume and advances it after each update."""

    state: Any

    @abstractmethod
    def checkpoint_modules(self) -> dict[str, Module]:
        """Modules saved as ``<name>.safetensors`` (unwrapped: never the DDP or compiled wrapper)."""

    @abstractmethod
    def checkpoint_objects(self) -> dict[str, Any]:
        """Objects with ``state_dict``/``load_state_dict`` saved in ``state.pt`` (optimisers, schedulers)."""

    @abstractmethod
    def batches(self, start_step: int) -> Iterable[Any]:
        """This rank's batches of steps ``start_step, start_step + 1, ...`` (at least until the last step)."""

    @abstractmethod
    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """The step's scalar loss (its graph kept for :meth:`update`, or already backpropagated) and scalars
        to log; no parameter may change here, so a non-finite loss stops the run before any update."""

    @abstractmethod
    def update(self, batch: Any, loss: Tensor) -> dict[str, float]:
        """The step's updates (backward where :meth:`loss` left it, optimiser, schedule, EMA); scalars to log."""

    @abstractmethod
    def learning_rate(self) -> float:
        """The current learning rate (logged as ``lr``)."""

    def prepare(self, job: TrainingJob) -> None:
        """After the weights are restored, before the first step: wrap for DDP, compile, set modes."""

    def after_step(self, job: TrainingJob, last: bool) -> None:
        """Periodic work after a step's logging, before its checkpoint (``last``: the final step)."""

    def finish(self) -> None:
        """After the loop (also when it fails): undo :meth:`prepare`'s wrapping."""
