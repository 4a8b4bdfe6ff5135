"""``mlflow``: an MLflow run, through ``MlflowClient`` (no fluent API: no process-wide active run).

- Tracking URI: ``params.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a ``file:`` store in the run
  directory's ``mlruns/`` (``mlflow ui --backend-store-uri <run>/mlruns``). MLflow 3 refuses ``file:`` stores
  unless ``MLFLOW_ALLOW_FILE_STORE=true``; for a ``file:`` URI this tracker sets that for its process.
- Params: the resolved assembly flattened to ``a.b.c`` keys, values as text cut to MLflow's 6000 characters
  (keys over 250 characters are left out); the whole assembly is also the artifact ``assembly.yaml``.
  A resumed run logs only the keys its run does not have yet (MLflow params cannot change), and rewrites
  ``assembly.yaml``.
- Metrics: every scalar with its step (``train_denoiser/loss``); images with ``log_image`` (key + step);
  ``metrics.json``'s numbers as metrics at step 0 and the file as an artifact.
- Resume: run id and URI are kept in ``trackers.json``; a resumed run on the same URI continues that run
  (status back to RUNNING), so each metric has one history across both halves.
- Start-up: an http(s) server must answer ``/health`` within ``probe_timeout`` seconds, else the tracker is
  disabled at once instead of retrying for minutes.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rae_framework.tracker import RunStatus, Tracker, TrackerRun
from rae_trackers.configs import DEFAULT_PROJECT, MlflowConfig
from rae_trackers.flatten import as_text, flatten, numbers

MAX_PARAM_VALUE = 6000  # mlflow/utils/validation.py MAX_PARAM_VAL_LENGTH
MAX_KEY = 250  # mlflow/utils/validation.py MAX_ENTITY_KEY_LENGTH
BATCH = 100  # params per log_batch call (MLflow's limit)
_STATUSES = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


class MlflowTracker(Tracker):
    """One MLflow run per run directory."""

    Config = MlflowConfig

    def __init__(self, config: MlflowConfig) -> None:
        super().__init__(config)
        self._client = None
        self._run_id: str | None = None

    def start(self, run: TrackerRun) -> dict[str, Any]:
        """Create the run, or continue the previous one on the same tracking URI; log the assembly."""
        from mlflow.tracking import MlflowClient

        uri = self.tracking_uri(Path(run.run_dir))
        _prepare(uri, self.config.probe_timeout)
        self._client = MlflowClient(tracking_uri=uri)
        previous = run.previous or {}
        if previous.get("run_id") and previous.get("tracking_uri") == uri:
            self._run_id = previous["run_id"]
            self._client.update_run(self._run_id, status="RUNNING")
        else:
            self._run_id = self._client.create_run(self._experiment_id(), run_name=self.config.run_name or run.name,
                                                   tags=dict(self.config.tags)).info.run_id
        self._log_config(run.config)
        return {"run_id": self._run_id, "tracking_uri": uri}

    def tracking_uri(self, run_dir: Path) -> str:
        """``params.tracking_uri``, ``MLFLOW_TRACKING_URI`` or ``<run_dir>/mlruns`` as a ``file:`` URI."""
        return (self.config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                or (run_dir.resolve() / "mlruns").as_uri())

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One ``log_batch`` of metrics at ``step``."""
        self._log_numbers(values, step)

    def log_image(self, tag: str, step: int, image) -> None:
        """``(H, W, 3)`` uint8 under ``images/`` (MLflow's image key + step)."""
        self._client.log_image(self._run_id, image, key=tag, step=step)

    def log_metrics(self, metrics: Mapping[str, Any], path: Path) -> None:
        """Numbers as metrics (step 0), the file as artifact ``metrics.json``."""
        self._log_numbers(numbers(metrics), 0)
        self._client.log_artifact(self._run_id, str(path))

    def finish(self, status: RunStatus) -> None:
        """Mark the run FINISHED, FAILED or KILLED (preempted: a resumed run sets it RUNNING again)."""
        if self._run_id is not None:
            self._client.set_terminated(self._run_id, _STATUSES[status])
            self._run_id = None

    def _experiment_id(self) -> str:
        name = self.config.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        experiment = self._client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else self._client.create_experiment(name)

    def _log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self._client.get_run(self._run_id).data.params
        params = [Param(key, as_text(value)[:MAX_PARAM_VALUE]) for key, value in flatten(config)
                  if len(key) <= MAX_KEY and key not in existing]
        for start in range(0, len(params), BATCH):
            self._client.log_batch(self._run_id, params=params[start:start + BATCH])
        if config:
            self._client.log_dict(self._run_id, dict(config), "assembly.yaml")

    def _log_numbers(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in values.items()]
        for start in range(0, len(metrics), BATCH * 10):  # MLflow takes up to 1000 metrics per batch
            self._client.log_batch(self._run_id, metrics=metrics[start:start + BATCH * 10])


def _prepare(uri: str, timeout: float) -> None:
    """A ``file:`` store is allowed (MLflow 3 asks for the opt-in); an http(s) server must answer ``/health``."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    elif uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
                pass
        except urllib.error.HTTPError:  # it answered (e.g. 401 before the client's credentials): up
            pass
        except OSError as error:
            raise ConnectionError(f"MLflow server {uri} does not answer ({error})") from None
