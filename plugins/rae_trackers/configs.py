"""Torch-free configurations of the built-in trackers (``tensorboard``, ``wandb``, ``mlflow``).

Imported by ``rae list`` / ``describe`` / ``validate`` without torch, wandb or mlflow; the classes that use
them live in ``tensorboard_events.py``, ``wandb_run.py`` and ``mlflow_run.py``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rae_framework.config import ComponentConfig

DEFAULT_PROJECT = "rae-framework"  # W&B project and MLflow experiment when neither params nor environment name one


class TensorBoardConfig(ComponentConfig):
    """TensorBoard event files in the run directory."""

    folder: str = Field("tensorboard", min_length=1, description="Folder of the event files, relative to the "
                                                                   "run directory.")


class WandbConfig(ComponentConfig):
    """A Weights & Biases run (the run directory's ``wandb/`` holds its local files)."""

    project: str | None = Field(None, description="W&B project; None: WANDB_PROJECT, else 'rae-framework'.")
    entity: str | None = Field(None, description="W&B entity (user or team); None: WANDB_ENTITY or your default.")
    name: str | None = Field(None, description="Display name of the run; None: the assembly's name.")
    group: str | None = Field(None, description="W&B group (e.g. one sweep).")
    tags: tuple[str, ...] = Field((), description="W&B tags of the run.")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="None: WANDB_MODE, else 'online'. 'offline' writes the run under the run directory "
                          "for a later `wandb sync`.")
    init_timeout: float = Field(60.0, gt=0.0, description="Seconds to wait for the W&B server at start-up "
                                                          "before the tracker is disabled (the run goes on).")


class MlflowConfig(ComponentConfig):
    """An MLflow run on a tracking server or a local ``file:`` store."""

    tracking_uri: str | None = Field(None, description="None: MLFLOW_TRACKING_URI, else a file: store in the run "
                                                       "directory's mlruns/ (e.g. http://host:5000, file:/path).")
    experiment: str | None = Field(None, description="Experiment name; None: MLFLOW_EXPERIMENT_NAME, else "
                                                     "'rae-framework'.")
    run_name: str | None = Field(None, description="Run name; None: the assembly's name.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags set on the run.")
    probe_timeout: float = Field(5.0, gt=0.0, description="Seconds to wait for an http(s) server's /health at "
                                                          "start-up before the tracker is disabled.")
