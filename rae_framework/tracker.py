"""Experiment trackers as registered components (kind ``tracker``): the torch-free interface.

A tracker mirrors what a run logs into an experiment tracker (TensorBoard events, a Weights & Biases run, an
MLflow run): the resolved assembly as config, every scalar with its step, the sample grids as images and
``metrics.json`` at the end. An assembly chooses them by name::

    trackers: [tensorboard, {name: wandb, params: {project: rae}}]

The engine (:class:`rae_framework.engine.trackers.TrackerSet`) builds them on rank 0 only, calls them
fail-soft (a tracker that raises is warned about once and disabled: it never stops a run) and keeps what
:meth:`Tracker.start` returns in the run directory's ``trackers.json``, so that a resumed run hands it back and
the tracker continues the same run instead of starting a new one. Also exported as
``rae_framework.interfaces.Tracker``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rae_framework.config import Component

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

TRACKER_KIND = "tracker"
TRACKERS_FILE = "trackers.json"  # in the run directory: tracker name -> the state its start returned
RunStatus = Literal["finished", "failed", "killed"]  # killed: preempted (exit 75), to be resumed


@dataclass(frozen=True)
class TrackerRun:
    """What a tracker starts with: the run directory (everything it writes goes below it), the run's name,
    the resolved assembly (plain data) and, for a resumed run, the state its previous start returned."""

    run_dir: Path
    name: str
    config: Mapping[str, Any]
    previous: Mapping[str, Any] | None = None


class Tracker(Component, ABC):
    """One experiment tracker. Called on rank 0 only, in this order: :meth:`start` once, then any number of
    :meth:`log_scalars` / :meth:`log_image`, then :meth:`log_metrics` at the end of a run that has
    ``metrics.json``, then :meth:`finish` (also after a failure). A method may raise: the engine warns and
    stops calling this tracker, the run goes on."""

    @abstractmethod
    def start(self, run: TrackerRun) -> dict[str, Any]:
        """Open (or, with ``run.previous``, continue) the tracker's run and log ``run.config``; returns the
        JSON-ready state that continues this same run when handed back as ``previous`` (e.g. its run id)."""

    @abstractmethod
    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Scalars at ``step`` of their stage; names are ``stage/name`` (``train_denoiser/loss``)."""

    @abstractmethod
    def log_image(self, tag: str, step: int, image: np.ndarray) -> None:
        """An image ``(H, W, 3)`` uint8 (a sample grid, reconstructions) under ``tag`` (``sample/grid``)."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, Any], path: Path) -> None:
        """The run's final ``metrics.json`` (its parsed ``metrics`` and the file itself at ``path``)."""

    @abstractmethod
    def finish(self, status: RunStatus) -> None:
        """Flush and close the tracker's run, marked ``status``."""
