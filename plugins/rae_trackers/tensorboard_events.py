"""``tensorboard``: TensorBoard event files under the run directory (``tensorboard/`` by default).

A resumed run appends new event files to the same folder; TensorBoard shows them as one run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rae_framework.tracker import RunStatus, Tracker, TrackerRun
from rae_trackers.configs import TensorBoardConfig
from rae_trackers.flatten import numbers


class TensorBoardTracker(Tracker):
    """Scalars, images and text (the assembly, ``metrics.json``) through torch's ``SummaryWriter``."""

    Config = TensorBoardConfig

    def __init__(self, config: TensorBoardConfig) -> None:
        super().__init__(config)
        self._writer = None

    def start(self, run: TrackerRun) -> dict[str, Any]:
        """Open the event folder; the assembly goes in as text (tab TEXT, tag ``assembly``)."""
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(Path(run.run_dir) / self.config.folder))
        if run.config:
            self._writer.add_text("assembly", _code_block(yaml.safe_dump(dict(run.config), sort_keys=False)))
        return {}

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One ``add_scalar`` per value."""
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def log_image(self, tag: str, step: int, image) -> None:
        """``(H, W, 3)`` uint8."""
        self._writer.add_image(tag, image, step, dataformats="HWC")

    def log_metrics(self, metrics: Mapping[str, Any], path: Path) -> None:
        """Numbers as ``metrics/<name>`` scalars at step 0, the whole file as text."""
        for name, value in numbers(metrics).items():
            self._writer.add_scalar(f"metrics/{name}", value, 0)
        self._writer.add_text("metrics", _code_block(json.dumps(metrics, indent=2, sort_keys=True)))

    def finish(self, status: RunStatus) -> None:
        """Flush and close the event file (TensorBoard has no run status)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _code_block(text: str) -> str:
    """TensorBoard renders text as Markdown: indent four spaces to keep the layout."""
    return "\n".join(f"    {line}" for line in text.splitlines())
