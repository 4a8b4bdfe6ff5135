"""One writer per run directory, through the CLI: a second ``rae run`` on a folder that a running one holds
exits 2 at once naming the holder, leaves the folder as it was, and the first run ends as a clean run does;
the lock of a run killed with SIGKILL is taken over by the next run, which says so; under torchrun every rank
of a refused job exits (none waits for another)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rae_framework.engine.run_lock import LOCK_NAME, LockTimes, RunLock
from tiny_run import tiny_assembly

ASSEMBLY = tiny_assembly("lock-tiny", """\
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 30, batch_size: 16, checkpoint_every: 10, log_every: 5}
""")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
REFUSED = "is in use by another process"


def command(assembly: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "rae_framework", "run", str(assembly), "--out", str(out)]


def start(assembly: Path, out: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as handle:  # a file, not a pipe: a stopped reader must not block the run
        return subprocess.Popen(command(assembly, out), stdout=subprocess.DEVNULL, stderr=handle, env=ENV)


def wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and mtime (ns)."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*"))} | {".": (0, folder.stat().st_mtime_ns)}


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / "denoiser_ema.safetensors"))


@pytest.mark.slow
def test_a_second_run_on_a_busy_folder_exits_2_untouched_and_the_first_equals_a_clean_run(tmp_path):
    assembly = tmp_path / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    clean = start(assembly, tmp_path / "clean", tmp_path / "clean.log")
    run, log = tmp_path / "run", tmp_path / "first.log"
    first = start(assembly, run, log)
    try:
        wait_for(log, "latent_stats: starting", first)
        first.send_signal(signal.SIGSTOP)  # holds the folder for as long as the second run needs to start
        before = snapshot(run)
        second = subprocess.run(command(assembly, run), capture_output=True, text=True, env=ENV, timeout=300)
        after = snapshot(run)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr[-3000:]
    assert REFUSED in second.stderr and f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert f"run {assembly} --out {run}" in second.stderr and str(run / LOCK_NAME) in second.stderr  # its command
    assert after == before and (run / LOCK_NAME).is_file()
    assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert clean.wait(timeout=300) == 0, (tmp_path / "clean.log").read_text()[-3000:]
    expected, got = weights(tmp_path / "clean"), weights(run)
    assert expected.keys() == got.keys() and all(torch.equal(expected[key], got[key]) for key in expected)
    assert not (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_taken_over_by_the_next_run_which_says_so(tmp_path):
    assembly = tmp_path / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    run, log = tmp_path / "run", tmp_path / "killed.log"
    killed = start(assembly, run, log)
    wait_for(log, "latent_stats: starting", killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL and (run / LOCK_NAME).is_file()
    rerun = subprocess.run(command(assembly, run), capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"warning: took over the lock of run directory {run} from host " in rerun.stderr
    assert f"pid {killed.pid}, " in rerun.stderr and f"its process {killed.pid} no longer runs" in rerun.stderr
    assert not (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_under_torchrun_every_rank_of_a_refused_job_exits_and_nothing_is_written(tmp_path):
    assembly = tmp_path / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    run, logs = tmp_path / "run", tmp_path / "logs"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
                "2", "--log-dir", str(logs), "--redirects", "2"]  # each rank's stderr in its own file
    with RunLock.acquire(run, LockTimes()):
        before = snapshot(run)
        job = subprocess.run([*torchrun, "-m", "rae_framework", "run", str(assembly), "--out", str(run)],
                             capture_output=True, text=True, env=ENV, timeout=300)
        assert snapshot(run) == before
    assert job.returncode != 0, job.stderr[-3000:]
    (rank1,) = logs.glob("*/attempt_0/1/stderr.log")
    assert REFUSED in rank1.read_text() and f"pid {os.getpid()}" in rank1.read_text()  # rank 0 read it, all were told
