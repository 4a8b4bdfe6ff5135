"""``wandb``: a Weights & Biases run, its local files under the run directory's ``wandb/``.

- Config: the resolved assembly. Scalars: each stage's charts have their own x axis, ``<stage>/step``
  (``define_metric``), since every stage counts its steps from 0 and W&B's own step must only grow.
- Images: ``wandb.Image`` under their tag (``sample/grid``, ``train_decoder/reconstructions``).
- ``metrics.json``: into the run's summary (the columns of the runs table) and as an artifact of type
  ``metrics``.
- Resume: the run id is kept in ``trackers.json``; a resumed run passes ``id=..., resume="allow"``, so the
  charts continue. Offline, each start writes a new ``offline-run-*-<id>`` folder with the same id, which
  ``wandb sync`` uploads into the one run.
- Start-up never waits on a person: online without an API key fails at once (``wandb.login(prompt=False)``),
  a server that does not answer fails after ``init_timeout``; either way the engine warns and goes on.
- A preempted run (status ``killed``) is marked preempting before it finishes, as W&B expects of a run that
  will be resumed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rae_framework.tracker import RunStatus, Tracker, TrackerRun
from rae_trackers.configs import DEFAULT_PROJECT, WandbConfig
from rae_trackers.flatten import numbers

_EXIT_CODES = {"finished": 0, "failed": 1, "killed": 75}


class WandbTracker(Tracker):
    """One W&B run per run directory."""

    Config = WandbConfig

    def __init__(self, config: WandbConfig) -> None:
        super().__init__(config)
        self._run = None
        self._stages: set[str] = set()  # stages whose step metric is defined

    def start(self, run: TrackerRun) -> dict[str, Any]:
        """``wandb.init`` (continuing the previous run's id); raises when not logged in online."""
        import wandb

        mode = self.config.mode or os.environ.get("WANDB_MODE") or "online"
        if mode in ("online", "run") and not wandb.login(prompt=False, verify=False):
            raise RuntimeError("not logged in to W&B: run `wandb login` or set WANDB_API_KEY "
                               "(or WANDB_MODE=offline to sync later)")
        previous_id = (run.previous or {}).get("id")
        self._run = wandb.init(
            project=self.config.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            entity=self.config.entity, name=self.config.name or run.name, group=self.config.group,
            tags=list(self.config.tags) or None, id=previous_id, resume="allow" if previous_id else None,
            dir=str(Path(run.run_dir)), mode=mode, reinit="create_new",
            settings=wandb.Settings(init_timeout=self.config.init_timeout, console="off", silent=True))
        self._run.config.update(dict(run.config), allow_val_change=True)  # a resumed run may change a value
        return {"id": self._run.id, "project": self._run.project}

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """The values with their stage's step metric(s), in one history row."""
        row = dict(values)
        for tag in values:
            row.update(self._stage_step(tag, step))
        self._run.log(row)

    def log_image(self, tag: str, step: int, image) -> None:
        """``(H, W, 3)`` uint8 as ``wandb.Image``."""
        import wandb

        self._run.log({tag: wandb.Image(image), **self._stage_step(tag, step)})

    def log_metrics(self, metrics: Mapping[str, Any], path: Path) -> None:
        """Numbers into the summary; the file as artifact ``metrics-<run id>`` (type ``metrics``)."""
        import wandb

        self._run.summary.update(numbers(metrics))
        artifact = wandb.Artifact(f"metrics-{self._run.id}", type="metrics")
        artifact.add_file(str(path), name="metrics.json")
        self._run.log_artifact(artifact)

    def finish(self, status: RunStatus) -> None:
        """``finish`` with the CLI's exit code (0, 1, 75 preempted)."""
        if self._run is None:
            return
        if status == "killed":
            self._run.mark_preempting()
        self._run.finish(exit_code=_EXIT_CODES[status])
        self._run = None

    def _stage_step(self, tag: str, step: int) -> dict[str, int]:
        """``{"<stage>/step": step}`` for a ``stage/name`` tag, defining the stage's x axis on first use."""
        stage, slash, _ = tag.partition("/")
        if not slash:
            return {}
        if stage not in self._stages:
            self._run.define_metric(f"{stage}/step")
            self._run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self._stages.add(stage)
        return {f"{stage}/step": step}
