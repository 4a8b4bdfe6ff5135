"""The engine's side of the trackers: RunLogger fans out to them on rank 0 only, every failure is one warning and
the tracker is dropped (the run goes on), and trackers.json carries each tracker's run to a resumed run."""

from __future__ import annotations

import json

from tracker_doubles import CONFIG, Recorder, RecorderConfig

from rae_framework.engine.logging import RunLogger
from rae_framework.engine.trackers import TrackerSet
from rae_framework.tracker import Tracker


def run_logger(tmp_path, **trackers: Tracker) -> tuple[RunLogger, list[str]]:
    warnings: list[str] = []
    logger = RunLogger(tmp_path, console=False, trackers=TrackerSet(trackers, warnings.append))
    return logger, warnings


def test_the_logger_fans_stage_scalars_images_and_metrics_out_to_every_tracker(tmp_path, grid):
    one, two = Recorder(RecorderConfig()), Recorder(RecorderConfig())
    logger, warnings = run_logger(tmp_path, one=one, two=two)
    logger.trackers.start(tmp_path, "unit", CONFIG, resume=True)
    logger.scalars("train_denoiser", 3, {"loss": 0.5, "lr": 1e-4})
    logger.image("sample/grid", 0, grid)
    logger.metrics({"psnr": 9.5}, tmp_path / "metrics.json")
    logger.close("killed")
    expected = [("start", "unit", None), ("log_scalars", 3, {"train_denoiser/loss": 0.5, "train_denoiser/lr": 1e-4}),
                ("log_image", "sample/grid", 0, (8, 16, 3)), ("log_metrics", {"psnr": 9.5}, "metrics.json"),
                ("finish", "killed")]
    assert one.calls == expected and two.calls == expected and warnings == []
    assert json.loads((tmp_path / "trackers.json").read_text()) == {"one": {"run": "r1", "starts": 1},
                                                                    "two": {"run": "r1", "starts": 1}}


def test_a_tracker_that_fails_at_start_is_warned_about_once_and_never_called_again(tmp_path):
    broken, fine = Recorder(RecorderConfig(fail_at="start")), Recorder(RecorderConfig())
    logger, warnings = run_logger(tmp_path, broken=broken, fine=fine)
    logger.trackers.start(tmp_path, "unit", CONFIG, resume=True)
    for step in range(3):
        logger.scalars("train_denoiser", step, {"loss": 1.0})
    logger.close()
    assert warnings == ["tracker 'broken' failed to start (OSError: start broke); it is disabled, the run goes on "
                        "without it"]
    assert [call[0] for call in broken.calls] == ["start"]
    assert [call[0] for call in fine.calls] == ["start", "log_scalars", "log_scalars", "log_scalars", "finish"]
    assert list(json.loads((tmp_path / "trackers.json").read_text())) == ["fine"]


def test_a_tracker_that_fails_while_logging_is_dropped_after_one_warning(tmp_path):
    broken = Recorder(RecorderConfig(fail_at="log_scalars"))
    logger, warnings = run_logger(tmp_path, broken=broken)
    logger.trackers.start(tmp_path, "unit", CONFIG, resume=True)
    for step in range(3):
        logger.scalars("train_denoiser", step, {"loss": 1.0})
    logger.close()
    assert len(warnings) == 1 and "tracker 'broken' failed to log scalars (OSError" in warnings[0]
    assert [call[0] for call in broken.calls] == ["start", "log_scalars"]  # no finish: it is disabled


def test_a_resumed_run_hands_each_tracker_its_previous_state_and_a_fresh_start_does_not(tmp_path):
    for resume, starts in ((True, 1), (True, 2), (True, 3), (False, 1)):
        tracker = Recorder(RecorderConfig())
        logger, _ = run_logger(tmp_path, rec=tracker)
        logger.trackers.start(tmp_path, "unit", CONFIG, resume=resume)
        logger.close()
        assert json.loads((tmp_path / "trackers.json").read_text())["rec"]["starts"] == starts


def test_a_failed_start_keeps_the_previous_state_for_a_later_resume(tmp_path):
    logger, _ = run_logger(tmp_path, rec=Recorder(RecorderConfig()))
    logger.trackers.start(tmp_path, "unit", CONFIG, resume=True)
    logger, warnings = run_logger(tmp_path, rec=Recorder(RecorderConfig(fail_at="start")))
    logger.trackers.start(tmp_path, "unit", CONFIG, resume=True)
    assert len(warnings) == 1
    assert json.loads((tmp_path / "trackers.json").read_text()) == {"rec": {"run": "r1", "starts": 1}}


def test_other_ranks_build_no_tracker(tmp_path, session):
    from rae_framework import load_assembly

    (tmp_path / "a.yaml").write_text("name: ranks\ntrackers: [tensorboard, mlflow]\n")
    assembly = load_assembly(tmp_path / "a.yaml", session=session)
    logger = RunLogger(tmp_path / "rank1", enabled=False, trackers=None)
    logger.start_trackers(assembly, resume=True)
    logger.scalars("train_denoiser", 0, {"loss": 1.0})
    logger.close()
    assert logger.trackers.names == [] and not (tmp_path / "rank1").exists()
    main = RunLogger(tmp_path / "rank0", console=False, tensorboard=False)
    main.start_trackers(assembly, resume=True)
    assert main.trackers.names == ["tensorboard", "mlflow"]
    main.close()
    assert sorted(path.name for path in (tmp_path / "rank0").iterdir()) == \
        ["log.txt", "mlruns", "tensorboard", "trackers.json"]


def test_without_trackers_the_logger_still_writes_tensorboard_events(tmp_path):
    logger = RunLogger(tmp_path, console=False)
    logger.scalars("train_denoiser", 0, {"loss": 1.0})
    logger.close()
    assert logger.trackers.names == [] and list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
