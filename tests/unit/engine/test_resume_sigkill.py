"""A training run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("train_worker.py")


def start(stage: str, out: Path, steps: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), stage, str(out), str(steps)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


def kill_at_step(process: subprocess.Popen, step: int) -> None:
    """SIGKILL the worker as soon as it reports ``step`` (it is then mid-way through the next step)."""
    for line in process.stdout:
        if line.startswith(f"step {step} "):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def assert_same_weights(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        left, right = load_file(str(a / f"final_{name}.safetensors")), load_file(str(b / f"final_{name}.safetensors"))
        assert left.keys() == right.keys()
        mismatched = [key for key in left if not (left[key] == right[key]).all()]
        assert not mismatched, f"{name}: tensors differ after resume: {mismatched}"


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "steps", "kill", "names"), [
    ("stage2", 12, 5, ["model", "ema"]),
    ("stage1", 6, 3, ["decoder", "ema", "discriminator"]),
])
def test_sigkill_then_resume_is_bit_identical(tmp_path, stage, steps, kill, names):
    reference = start(stage, tmp_path / "reference", steps)
    killed = start(stage, tmp_path / "resumed", steps)
    kill_at_step(killed, kill)
    checkpoints = sorted(path.name for path in (tmp_path / "resumed" / "ckpt").iterdir() if path.name[0] != ".")
    assert checkpoints and checkpoints[-1] < f"step_{steps:08d}", checkpoints  # it really was interrupted
    resumed = start(stage, tmp_path / "resumed", steps)
    resumed_steps = [int(line.split()[1]) for line in resumed.stdout]
    assert resumed.wait(timeout=300) == 0 and reference.wait(timeout=300) == 0
    assert resumed_steps[0] > 1 and resumed_steps[-1] == steps  # continued, did not restart
    assert_same_weights(tmp_path / "reference", tmp_path / "resumed", names)
