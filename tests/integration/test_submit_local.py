"""``rae submit --local``: submitit's local executor runs 2 tasks (CPU, gloo) that train what ``torchrun
--nproc_per_node=2`` trains; SIGUSR2 (submitit's notice) mid-training checkpoints the step, submitit requeues the
job, and the requeued job resumes to the same weights."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny_run import tiny_assembly

STEPS = 40
ASSEMBLY = tiny_assembly("submit-tiny", f"""\
  latent_stats: {{batch_size: 64}}
  train_denoiser: {{steps: {STEPS}, batch_size: 16, checkpoint_every: 1000, log_every: 1}}
""").replace("holdout_fraction: 0.05", "holdout_fraction: 0.9")  # 180 training images: a quick latent_stats
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def submit_command(assembly: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "rae_framework", "submit", str(assembly), "--out", str(out), "--gpus-per-node", "0",
            "--tasks-per-node", "2", "--local"]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / "denoiser_ema.safetensors"))


def assert_equal_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys() and all(torch.equal(got[key], expected[key]) for key in expected)


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory):
    """The assembly file and the final weights of its run under ``torchrun --nproc_per_node=2``."""
    folder = tmp_path_factory.mktemp("submit")
    assembly = folder / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
               "-m", "rae_framework", "run", str(assembly), "--out", str(folder / "torchrun")]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return assembly, final_weights(folder / "torchrun")


@pytest.mark.slow
def test_local_submit_trains_what_torchrun_trains(tmp_path, torchrun_run):
    assembly, expected = torchrun_run
    done = subprocess.run(submit_command(assembly, tmp_path / "run"), capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 node x 2 tasks (2 processes, no GPU)" in done.stderr
    assert f"run finished: {tmp_path / 'run'} (ran: latent_stats, train_denoiser;" in done.stdout
    logs = sorted(path.name for path in (tmp_path / "run" / "submitit").glob("*_log.err"))
    assert len(logs) == 2  # one per task
    assert_equal_weights(final_weights(tmp_path / "run"), expected)


def task_pids(folder: Path) -> list[int]:
    """The processes of this test's job: submitit tasks whose command line names its (unique) folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:  # the process ended meanwhile
            continue
        if b"submitit.core._submit" in argv and str(folder).encode() in argv:
            pids.append(int(entry.name))
    return pids


def wait_for_step(log_folder: Path, step: int, process: subprocess.Popen, timeout: float = 600) -> None:
    """Until task 0's log shows training step ``step`` (the job's logs are files, one per task)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        logs = list(log_folder.glob("*_0_log.err"))
        if logs and f"train_denoiser step {step}/" in logs[0].read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"the job did not reach step {step} (exit code {process.poll()})")


@pytest.mark.slow
def test_sigusr2_checkpoints_requeues_and_resumes_to_the_clean_weights(tmp_path, torchrun_run):
    assembly, expected = torchrun_run
    out = tmp_path / "run"
    process = subprocess.Popen(submit_command(assembly, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)
    wait_for_step(out / "submitit", 5, process)
    pids = task_pids(out / "submitit")
    assert len(pids) == 2
    for pid in pids:  # as SLURM's --signal=USR2@delay: every task of the job
        os.kill(pid, signal.SIGUSR2)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    logs = {path.name: path.read_text() for path in (out / "submitit").iterdir() if path.suffix in (".err", ".out")}
    log = "\n".join(logs.values())
    match = re.search(rf"train_denoiser: preempted \(SIGUSR2\) after step (\d+)/{STEPS}", log)
    assert match, log[-3000:]
    step = int(match.group(1))
    assert 5 <= step < STEPS
    assert re.search(r"Requeued job \d+", log)  # submitit's requeue, after our checkpoint()
    assert f"train_denoiser: resumed from step {step}" in log
    assert "(ran: train_denoiser; up to date: latent_stats)" in stdout
    assert_equal_weights(final_weights(out), expected)
