"""The ``wandb`` tracker for real, offline: what its run's ``.wandb`` file and ``files/`` hold, a resumed start
that continues the same run id, an online start without credentials that fails at once, and one whose server
does not answer, which fails after ``init_timeout``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from tracker_doubles import CONFIG
from wandb_offline import offline_runs

from rae_framework.tracker import TrackerRun


def offline_tracker(session):
    return session.build("tracker", "wandb", {"project": "rae-test", "mode": "offline"})


def log_training(tracker, stage: str, steps: range) -> None:
    for step in steps:
        tracker.log_scalars(step, {f"{stage}/loss": 1.0 / (step + 1), f"{stage}/lr": 1e-4})


def test_an_offline_run_holds_the_config_scalars_by_stage_step_images_and_metrics(session, tmp_path, grid):
    tracker = offline_tracker(session)
    state = tracker.start(TrackerRun(tmp_path, "unit", CONFIG))
    log_training(tracker, "train_decoder", range(0, 3))
    log_training(tracker, "train_denoiser", range(0, 2))  # counts from 0 again: its own x axis
    tracker.log_image("sample/grid", 0, grid)
    (tmp_path / "metrics.json").write_text(json.dumps({"psnr": 9.5, "fid": 40.0}))
    tracker.log_metrics({"psnr": 9.5, "fid": 40.0}, tmp_path / "metrics.json")
    tracker.finish("finished")

    (run,) = offline_runs(tmp_path)
    assert run.run_id == state["id"] and run.project == "rae-test" and state["project"] == "rae-test"
    assert run.config["stages"] == CONFIG["stages"] and run.config["components"] == CONFIG["components"]
    denoiser = [(row["train_denoiser/step"], row["train_denoiser/loss"]) for row in run.history
                if "train_denoiser/loss" in row]
    assert denoiser == [(0, 1.0), (1, 0.5)]
    assert [row["train_decoder/step"] for row in run.history if "train_decoder/loss" in row] == [0, 1, 2]
    assert run.step_metrics["train_denoiser/*"] == "train_denoiser/step"
    (image_row,) = [row for row in run.history if "sample/grid._type" in row]
    assert image_row["sample/grid._type"] == "image-file" and image_row["sample/step"] == 0
    assert (image_row["sample/grid.width"], image_row["sample/grid.height"]) == (16, 8)
    assert [path.name.startswith("grid_") for path in run.images()] == [True]
    assert run.summary["psnr"] == 9.5 and run.summary["fid"] == 40.0
    assert (f"metrics-{run.run_id}", "metrics") in run.artifacts
    assert run.exit_code == 0


def test_a_resumed_start_continues_the_same_run_id(session, tmp_path):
    first = offline_tracker(session)
    state = first.start(TrackerRun(tmp_path, "unit", CONFIG))
    log_training(first, "train_denoiser", range(0, 2))
    first.finish("killed")  # preempted
    second = offline_tracker(session)
    assert second.start(TrackerRun(tmp_path, "unit", CONFIG, previous=state)) == state
    log_training(second, "train_denoiser", range(2, 4))
    second.finish("finished")

    runs = offline_runs(tmp_path)
    assert [run.run_id for run in runs] == [state["id"], state["id"]]  # `wandb sync` merges them into one run
    assert [run.exit_code for run in runs] == [75, 0]
    steps = [row["train_denoiser/step"] for run in runs for row in run.history if "train_denoiser/loss" in row]
    assert steps == [0, 1, 2, 3]


def test_online_without_credentials_fails_at_once_instead_of_prompting(session, tmp_path):
    tracker = session.build("tracker", "wandb", {"mode": "online"})
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="not logged in to W&B"):
        tracker.start(TrackerRun(tmp_path, "unit", CONFIG))
    assert time.monotonic() - started < 10
    assert not (tmp_path / "wandb").exists()


SERVER_DOWN = """\
import sys, time
from pathlib import Path
from rae_framework import Session
from rae_framework.tracker import TrackerRun
tracker = Session().build("tracker", "wandb", {"mode": "online", "init_timeout": 3})
started = time.monotonic()
try:
    tracker.start(TrackerRun(Path(sys.argv[1]), "unit", {}))
except Exception as error:
    print(type(error).__name__, round(time.monotonic() - started, 1))
"""


@pytest.mark.slow
def test_a_server_that_does_not_answer_fails_the_start_after_init_timeout(tmp_path):
    """In a fresh process (wandb keeps its settings in a process-wide singleton): a key, but no server."""
    env = {**os.environ, "WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", SERVER_DOWN, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=120)
    name, seconds = done.stdout.split()
    assert name == "CommError" and 3 <= float(seconds) < 30, done.stderr[-2000:]
