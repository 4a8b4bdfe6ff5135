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

STEPS = 60
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


def signalled_submission(assembly: Path, out: Path, number: int) -> tuple[int, str, str, str]:
    """``rae submit --local``, ``number`` sent to every task (as SLURM does) once training logged step 5; the
    exit code, stdout, stderr and the job's logs."""
    process = subprocess.Popen(submit_command(assembly, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)
    wait_for_step(out / "submitit", 5, process)
    pids = task_pids(out / "submitit")
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, number)
    stdout, stderr = process.communicate(timeout=600)
    logs = [path.read_text() for path in sorted((out / "submitit").iterdir()) if path.suffix in (".err", ".out")]
    return process.returncode, stdout, stderr, "\n".join(logs)


@pytest.mark.slow
def test_sigusr2_checkpoints_requeues_and_resumes_to_the_clean_weights(tmp_path, torchrun_run):
    assembly, expected = torchrun_run
    out = tmp_path / "run"
    code, stdout, stderr, log = signalled_submission(assembly, out, signal.SIGUSR2)  # the time limit's notice
    assert code == 0, stderr[-3000:]
    match = re.search(rf"train_denoiser: preempted \(SIGUSR2\) after step (\d+)/{STEPS}", log)
    assert match, log[-3000:]
    step = int(match.group(1))
    assert 5 <= step < STEPS
    assert re.search(r"Requeued job \d+", log)  # submitit's requeue, after our checkpoint()
    assert f"train_denoiser: resumed from step {step}" in log
    assert "(ran: train_denoiser; up to date: latent_stats)" in stdout
    assert_equal_weights(final_weights(out), expected)


@pytest.mark.slow
def test_sigterm_checkpoints_and_ends_the_job_without_requeue(tmp_path, torchrun_run):
    """SIGTERM (SLURM preempting, which requeues the job itself, or scancel): the step is saved, the job ends,
    ``rae submit`` exits 75 saying how to resume."""
    assembly, _ = torchrun_run
    out = tmp_path / "run"
    code, _, stderr, log = signalled_submission(assembly, out, signal.SIGTERM)
    assert code == 75, stderr[-3000:]
    match = re.search(rf"error: the job stopped: train_denoiser: preempted \(SIGTERM\) after step (\d+)/{STEPS}",
                      stderr)
    assert match and "Traceback" not in stderr, stderr[-3000:]
    assert "Requeued job" not in log
    checkpoints = [path.name for path in (out / "checkpoints" / "train_denoiser").glob("step_*")]
    assert checkpoints == [f"step_{int(match.group(1)):08d}"]
