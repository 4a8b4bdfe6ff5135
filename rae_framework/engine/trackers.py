"""The run's experiment trackers behind one fail-soft front (:class:`TrackerSet`), used by the RunLogger.

Rank 0 builds the assembly's trackers (``trackers:``; kind ``tracker``); other ranks build none. Every call
into a tracker is guarded: a tracker that raises, at start-up (not logged in, server down, library missing)
or later, gets one warning naming it and the error and is not called again, and the run goes on. A tracker
must never stop a multi-day job.

What each tracker's :meth:`~rae_framework.tracker.Tracker.start` returns (its run id) is kept in the run
directory's ``trackers.json``; a resumed run hands it back, so W&B and MLflow continue the same run. A run
that starts over (``resume=False``) starts new tracker runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rae_framework.files import atomic_write_text
from rae_framework.tracker import TRACKER_KIND, TRACKERS_FILE, RunStatus, Tracker, TrackerRun

Warn = Callable[[str], None]


class TrackerSet:
    """Named trackers, each disabled at its first exception (after one warning through ``warn``)."""

    def __init__(self, trackers: Mapping[str, Tracker], warn: Warn) -> None:
        self._trackers = dict(trackers)
        self._warn = warn

    @classmethod
    def build(cls, session, specs: Iterable[tuple[str, Any]], warn: Warn) -> TrackerSet:
        """The trackers named in ``specs`` (name, validated Config), built through ``session``; one that cannot
        be built is warned about and left out."""
        built = {}
        for name, config in specs:
            try:
                built[name] = session.build_from_config(session.registry.get(TRACKER_KIND, name), config)
            except Exception as error:  # noqa: BLE001 - a tracker never stops a run
                warn(_disabled(name, "could not be built", error))
        return cls(built, warn)

    @property
    def names(self) -> list[str]:
        """The trackers still enabled."""
        return list(self._trackers)

    def start(self, run_dir: Path, name: str, config: Mapping[str, Any], *, resume: bool) -> None:
        """Start every tracker (continuing the runs recorded in ``trackers.json`` when ``resume``) and record
        what each returned."""
        if not self._trackers:
            return
        path = Path(run_dir) / TRACKERS_FILE
        previous = _read_states(path) if resume else {}
        states = dict(previous)
        for tracker_name in list(self._trackers):
            run = TrackerRun(Path(run_dir), name, config, previous.get(tracker_name))
            state = self._call(tracker_name, "failed to start", lambda tracker: tracker.start(run))
            if tracker_name in self._trackers:
                states[tracker_name] = dict(state or {})
        atomic_write_text(path, json.dumps(states, indent=2, sort_keys=True) + "\n")

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Scalars ``stage/name`` at ``step`` to every tracker."""
        self._each("failed to log scalars", lambda tracker: tracker.log_scalars(step, values))

    def log_image(self, tag: str, step: int, image) -> None:
        """An ``(H, W, 3)`` uint8 image to every tracker."""
        self._each("failed to log an image", lambda tracker: tracker.log_image(tag, step, image))

    def log_metrics(self, metrics: Mapping[str, Any], path: Path) -> None:
        """The final ``metrics.json`` to every tracker."""
        self._each("failed to log metrics.json", lambda tracker: tracker.log_metrics(metrics, path))

    def finish(self, status: RunStatus) -> None:
        """Close every tracker's run, marked ``status``; the set is empty afterwards."""
        self._each("failed to finish", lambda tracker: tracker.finish(status))
        self._trackers.clear()

    def _each(self, what: str, call: Callable[[Tracker], Any]) -> None:
        for name in list(self._trackers):
            self._call(name, what, call)

    def _call(self, name: str, what: str, call: Callable[[Tracker], Any]) -> Any:
        try:
            return call(self._trackers[name])
        except Exception as error:  # noqa: BLE001 - a tracker never stops a run
            self._trackers.pop(name, None)
            self._warn(_disabled(name, what, error))
            return None


def _disabled(name: str, what: str, error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (f"tracker '{name}' {what} ({type(error).__name__}: {message[:300]}); it is disabled, "
            f"the run goes on without it")


def _read_states(path: Path) -> dict[str, dict[str, Any]]:
    """``trackers.json``; a missing or unreadable file means no tracker run to continue."""
    try:
        states = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(name): state for name, state in states.items() if isinstance(state, dict)} \
        if isinstance(states, dict) else {}
