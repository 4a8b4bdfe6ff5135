"""Preemption through the CLI: SIGTERM (or SLURM's ``--signal=USR1@90``) mid-training, with ``checkpoint_every``
beyond the steps left, saves the finished step, exits 75, and the rerun resumes to the clean run's weights."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tiny_run import tiny_assembly

ASSEMBLY = tiny_assembly("preempt-tiny", """\
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 150, batch_size: 16, checkpoint_every: 1000, log_every: 1}
""")
STEPS = 150


def command(assembly, out) -> list[str]:
    return [sys.executable, "-m", "rae_framework", "run", str(assembly), "--out", str(out)]


def environment() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def final_weights(out) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / "denoiser_ema.safetensors"))


def interrupted_run(assembly, out, number: int, when: str = "train_denoiser step 5/") -> tuple[int, str]:
    """Start a run, send ``number`` once it logged a line starting with ``when``, return its exit code and all
    of stderr."""
    process = subprocess.Popen(command(assembly, out), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True, env=environment())
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(when):
            process.send_signal(number)
            break
    rest = process.communicate(timeout=300)[1]
    return process.returncode, "".join(seen) + rest


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The assembly and the final weights of its uninterrupted run."""
    folder = tmp_path_factory.mktemp("preemption")
    assembly = folder / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    clean = subprocess.run(command(assembly, folder / "clean"), capture_output=True, text=True, env=environment(),
                           timeout=300)
    assert clean.returncode == 0, clean.stderr[-3000:]
    return assembly, final_weights(folder / "clean")


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_saves_the_step_and_the_rerun_equals_a_clean_run(tmp_path, clean_run, number):
    assembly, expected = clean_run

    out = tmp_path / "run"
    code, stderr = interrupted_run(assembly, out, number)
    assert code == 75, stderr[-3000:]
    match = re.search(rf"train_denoiser: preempted \({signal.Signals(number).name}\) after step (\d+)/{STEPS}", stderr)
    assert match, stderr[-3000:]
    step = int(match.group(1))
    assert 5 <= step < STEPS and "Traceback" not in stderr
    checkpoints = sorted(path.name for path in (out / "checkpoints" / "train_denoiser").glob("step_*"))
    assert checkpoints == [f"step_{step:08d}"]  # written although checkpoint_every (1000) is beyond the run

    resumed = subprocess.run(command(assembly, out), capture_output=True, text=True, env=environment(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"train_denoiser: resumed from step {step}" in resumed.stderr
    got = final_weights(out)
    assert expected.keys() == got.keys() and all(torch.equal(expected[key], got[key]) for key in expected)


BETWEEN_LOOPS = tiny_assembly("preempt-between-loops", """\
  latent_stats: {batch_size: 1}
  train_denoiser: {steps: 6, batch_size: 16, checkpoint_every: 1000}
""")  # one image per statistics batch: seconds of a stage that has no step to finish and save


@pytest.mark.slow
def test_a_signal_in_a_stage_without_steps_stops_cleanly_and_the_rerun_finishes(tmp_path):
    """SIGTERM during the latent statistics: no traceback and no death by signal, exit 75 naming the stage,
    the lock released and nothing recorded for the stage; the rerun computes it and ends as a clean run."""
    assembly = tmp_path / "tiny.yaml"
    assembly.write_text(BETWEEN_LOOPS)
    out = tmp_path / "run"
    code, stderr = interrupted_run(assembly, out, signal.SIGTERM, when="latent_stats: starting")
    assert code == 75, stderr[-3000:]
    assert "stopped by SIGTERM in stage 'latent_stats', before it saved progress of its own" in stderr
    assert "Traceback" not in stderr
    assert not (out / ".rae.lock").exists() and not (out / "stages" / "latent_stats").exists()
    assert "stopped by SIGTERM in stage 'latent_stats'" in (out / "log.txt").read_text()

    resumed = subprocess.run(command(assembly, out), capture_output=True, text=True, env=environment(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "latent_stats: done" in resumed.stderr
    clean = subprocess.run(command(assembly, tmp_path / "clean"), capture_output=True, text=True,
                           env=environment(), timeout=300)
    assert clean.returncode == 0, clean.stderr[-3000:]
    expected, got = final_weights(tmp_path / "clean"), final_weights(out)
    assert expected.keys() == got.keys() and all(torch.equal(expected[key], got[key]) for key in expected)
