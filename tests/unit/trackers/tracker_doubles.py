"""What the tracker tests share: a small resolved-assembly-like config and a tracker that records its calls."""

from __future__ import annotations

from pydantic import Field

from rae_framework import ComponentConfig
from rae_framework.tracker import Tracker

CONFIG = {"name": "unit", "seed": 0, "components": {"denoiser": {"name": "dit-dh", "params": {"depth": 2}}},
          "stages": {"sample": {"per_class": 1}}}


class RecorderConfig(ComponentConfig):
    fail_at: str | None = Field(None, description="The method that raises, if any.")


class Recorder(Tracker):
    """Records its calls; raises in ``fail_at``; its state counts the starts of its run."""

    Config = RecorderConfig

    def __init__(self, config: RecorderConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple] = []

    def _record(self, method: str, *args) -> None:
        self.calls.append((method, *args))
        if method == self.config.fail_at:
            raise OSError(f"{method} broke\nsecond line")

    def start(self, run):
        self._record("start", run.name, run.previous)
        return {"run": "r1", "starts": (run.previous or {}).get("starts", 0) + 1}

    def log_scalars(self, step, values):
        self._record("log_scalars", step, dict(values))

    def log_image(self, tag, step, image):
        self._record("log_image", tag, step, image.shape)

    def log_metrics(self, metrics, path):
        self._record("log_metrics", dict(metrics), path.name)

    def finish(self, status):
        self._record("finish", status)
