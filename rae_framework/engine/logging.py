"""Run logs: ``log.txt`` (text), ``metrics.csv`` (one row per logged step), the experiment trackers
(TensorBoard events, W&B, MLflow: :mod:`rae_framework.engine.trackers`), tqdm bars, and the console: every
message and warning on stderr, and, when stderr is not a terminal (SLURM, nohup, CI), a plain progress line
at every logged step (step, loss, steps/s, ETA) in place of the bars.

Only rank 0 writes; other ranks get a logger whose methods do nothing (and build no tracker).
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from rae_framework.engine.trackers import TrackerSet
from rae_framework.tracker import RunStatus

LOGGER_NAME = "rae_framework.engine"


def progress(total: int, description: str, *, enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar with rate and ETA; silent when not a TTY or ``enabled`` is False (other ranks)."""
    disable = not (enabled and sys.stderr.isatty())
    return tqdm(total=total, initial=initial, desc=description, disable=disable, dynamic_ncols=True,
                smoothing=0.1, unit="step")


class RunLogger:
    """Text and CSV logging of one run directory, fanned out to its experiment trackers (rank 0 only).

    ``trackers``: the run's trackers (built from the assembly by the runner, which starts them). Without
    them, ``tensorboard=True`` starts the registered ``tensorboard`` tracker alone (events under
    ``tensorboard/``), as this logger always did.
    """

    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 console: bool = True, trackers: TrackerSet | None = None) -> None:
        self.out_dir, self.enabled, self.console = Path(out_dir), enabled, console and enabled
        self.trackers = trackers if trackers is not None and enabled else TrackerSet({}, self.warning)
        self._last_progress: dict[str, tuple[float, int]] = {}  # stage -> (time, step) of its last line
        self._logger = logging.getLogger(f"{LOGGER_NAME}.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.out_dir / "log.txt")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            self._logger.addHandler(handler)
            if trackers is None and tensorboard:
                self.trackers = self._default_trackers()

    def _default_trackers(self) -> TrackerSet:
        """The ``tensorboard`` tracker alone, started at once (no assembly to log as config)."""
        from rae_framework.session import Session

        session = Session()
        trackers = TrackerSet.build(session, [("tensorboard", session.make_config("tracker", "tensorboard"))],
                                    self.warning)
        trackers.start(self.out_dir, self.out_dir.name, {}, resume=True)
        return trackers

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
        """Append ``values`` at ``step`` to ``metrics.csv`` and the trackers (``stage/name`` tags); without a
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
        self.trackers.log_scalars(step, {f"{stage}/{name}": float(value) for name, value in values.items()})

    def start_trackers(self, assembly, *, resume: bool) -> None:
        """Build the assembly's trackers (rank 0 only) and start them with its resolved form as config,
        continuing the tracker runs recorded in the run directory when ``resume``."""
        if not self.enabled:
            return
        self.trackers.finish("finished")
        self.trackers = TrackerSet.build(assembly.session, [(spec.name, spec.config) for spec in assembly.trackers],
                                         self.warning)
        self.trackers.start(self.out_dir, assembly.name, assembly.resolved(), resume=resume)
        if self.trackers.names:
            self.info(f"trackers: {', '.join(self.trackers.names)}")

    def image(self, tag: str, step: int, image) -> None:
        """An ``(H, W, 3)`` uint8 image (a sample grid, reconstructions) to the trackers, tag ``stage/name``."""
        if self.enabled:
            self.trackers.log_image(tag, step, image)

    def image_file(self, tag: str, step: int, path: Path) -> None:
        """:meth:`image` of a PNG just written (``samples/grid.png``, ``reconstructions/step_N.png``)."""
        if self.enabled and self.trackers.names:
            import numpy as np
            from PIL import Image

            with Image.open(path) as opened:
                self.image(tag, step, np.asarray(opened.convert("RGB")))

    def metrics(self, metrics: dict, path: Path) -> None:
        """The run's final ``metrics.json`` (parsed, and the file at ``path``) to the trackers."""
        if self.enabled:
            self.trackers.log_metrics(metrics, path)

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

    def close(self, status: RunStatus = "finished") -> None:
        """Finish the trackers' runs (marked ``status``), flush and close the files."""
        self.trackers.finish(status)
        for handler in list(self._logger.handlers):
            handler.close()
            self._logger.removeHandler(handler)


def _duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _format(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(value)
