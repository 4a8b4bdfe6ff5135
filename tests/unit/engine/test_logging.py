"""The run logger talks on the console: messages, warnings, and plain progress lines without a terminal."""

from __future__ import annotations

from rae_framework.engine.logging import RunLogger


def test_messages_and_warnings_reach_the_console_and_the_log(tmp_path, capsys):
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.info("sample: starting")
    logger.warning("sampling with untrained weights")
    logger.close()
    err = capsys.readouterr().err
    assert "sample: starting" in err and "WARNING sampling with untrained weights" in err
    assert "WARNING sampling with untrained weights" in (tmp_path / "log.txt").read_text()


def test_progress_lines_without_a_terminal_give_step_loss_rate_and_eta(tmp_path, capsys, monkeypatch):
    clock = iter([100.0, 110.0])
    monkeypatch.setattr("rae_framework.engine.logging.time.monotonic", lambda: next(clock))
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.scalars("train_denoiser", 10, {"loss": 0.5}, total=1000)
    logger.scalars("train_denoiser", 30, {"loss": 0.25}, total=1000)
    logger.scalars("train_denoiser", 30, {"holdout_psnr": 20.0})  # no total: not a progress line
    logger.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train_denoiser step")]
    assert lines == ["train_denoiser step 10/1000, loss 0.5000",
                     "train_denoiser step 30/1000, loss 0.2500, 2.00 steps/s, ETA 0:08:05"]


def test_other_ranks_and_disabled_consoles_stay_silent(tmp_path, capsys):
    for logger in (RunLogger(tmp_path / "a", enabled=False), RunLogger(tmp_path / "b", console=False,
                                                                       tensorboard=False)):
        logger.info("nothing to see")
        logger.close()
    assert "nothing to see" not in capsys.readouterr().err
