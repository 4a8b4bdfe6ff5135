"""Run logs: ``log.txt`` (text), ``metrics.csv`` (one row per logged step), TensorBoard events, tqdm bars,
and the console: every message and warning on stderr, and, when stderr is not a terminal (SLURM, nohup,
CI), a plain progress line at every logged step (step, loss, steps/s, ETA) in place of the bars.

Only rank 0 writes; other ranks get a logger whose methods do nothing.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

LOGGER_NAME = "rae_framework.engine"


def progress(total: int, description: str, *, enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar with rate and ETA; silent when not a TTY or ``enabled`` is False (other ranks)."""
    disable = not (enabled and sys.stderr.isatty())
    return tqdm(total=total, initial=initial, desc=description, disable=disable, dynamic_ncols=True,
                smoothing=0.1, unit="step")


class RunLogger:
    """Text, CSV and TensorBoard logging of one run directory (rank 0 only)."""

    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 console: bool = True) -> None:
        self.out_dir, self.enabled, self.console = Path(out_dir), enabled, console and enabled
        self._writer = None
        self._last_progress: dict[str, tuple[float, int]] = {}  # stage -> (time, step) of its last line
        self._logger = logging.getLogger(f"{LOGGER_NAME}.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.out_dir / "log.txt")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            self._logger.addHandler(handler)
            self._writer = self._tensorboard_writer() if tensorboard else None

    def _tensorboard_writer(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional at run time
            self.info("tensorboard is not installed: TensorBoard events are not written")
            return None
        return SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    def info(self, message: str) -> None:
        """One line in ``log.txt``, on the console and on the logging tree under ``rae_framework.engine``."""
        if self.enabled:
            self._logger.info(message)
            logging.getLogger(LOGGER_NAME).info(message)
            self._print(message)

    def warning(self, message: str) -> None:
        """A ``WARNING`` line, wherever :meth:`info` writes."""
        self.info(f"WARNING {message}")

    def _print(self, line: str) -> None:
        if self.console:
            print(line, file=sys.stderr, flush=True)

    def scalars(self, stage: str, step: int, values: dict[str, float], *, total: int | None = None) -> None:
        """Append ``values`` at ``step`` to ``metrics.csv`` and TensorBoard (``stage/name`` tags); without a
        terminal, also a progress line (``total`` = the stage's last step, for the ETA)."""
        if not self.enabled:
            return
        if total is not None and not sys.stderr.isatty():
            self._print(self._progress_line(stage, step, values, total))
        path = self.out_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["time", "stage", "step", "name", "value"])
            for name, value in values.items():
                writer.writerow([f"{time.time():.3f}", stage, step, name, _format(value)])
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{stage}/{name}", value, step)

    def _progress_line(self, stage: str, step: int, values: dict[str, float], total: int) -> str:
        now = time.monotonic()
        last_time, last_step = self._last_progress.get(stage, (None, step))
        self._last_progress[stage] = (now, step)
        rate = (step - last_step) / (now - last_time) if last_time is not None and now > last_time else None
        parts = [f"{stage} step {step}/{total}"]
        if "loss" in values:
            parts.append(f"loss {values['loss']:.4f}")
        if rate:
            parts += [f"{rate:.2f} steps/s", f"ETA {_duration((total - step) / rate)}"]
        return ", ".join(parts)

    def close(self) -> None:
        """Flush and close the files."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for handler in list(self._logger.handlers):
            handler.close()
            self._logger.removeHandler(handler)


def _duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _format(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(value)
