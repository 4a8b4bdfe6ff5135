"""The tracker contract passes on a built-in tracker and fails on trackers that break its rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from rae_framework.testing import TrackerContract
from tracker_doubles import Recorder, RecorderConfig


class LitteringTracker(Recorder):
    """Writes its files into the working directory (as wandb does without ``dir=``)."""

    def start(self, run):
        Path("wandb").mkdir()
        return super().start(run)


class ForgetfulTracker(Recorder):
    """Starts a new run whatever it is handed."""

    def start(self, run):
        super().start(run)
        return {"run": f"r{len(list(Path(run.run_dir).glob('*')))}"}


class OpaqueTracker(Recorder):
    """Returns a state trackers.json cannot hold."""

    def start(self, run):
        return {"run": object()}


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "run"


def test_the_contract_passes_on_tensorboard(session, run_dir):
    TrackerContract().test_logs_a_whole_run_inside_the_run_directory(session.build("tracker", "tensorboard"), run_dir)
    TrackerContract().test_a_resumed_start_continues_the_same_run(session.build("tracker", "tensorboard"),
                                                                  run_dir.with_name("again"))


def test_the_contract_catches_files_written_into_the_working_directory(run_dir):
    with pytest.raises(AssertionError, match="not the working directory: \\['wandb'\\]"):
        TrackerContract().test_logs_a_whole_run_inside_the_run_directory(LitteringTracker(RecorderConfig()), run_dir)


def test_the_contract_catches_a_resume_that_starts_a_new_run(run_dir):
    with pytest.raises(AssertionError, match="continues that run"):
        TrackerContract().test_a_resumed_start_continues_the_same_run(ForgetfulTracker(RecorderConfig()), run_dir)


def test_the_contract_catches_a_state_that_is_not_json(run_dir):
    with pytest.raises(AssertionError, match="JSON values only"):
        TrackerContract().test_logs_a_whole_run_inside_the_run_directory(OpaqueTracker(RecorderConfig()), run_dir)
