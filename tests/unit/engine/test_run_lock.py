"""The run directory lock: one holder at a time, refusals that write nothing, takeover of a dead or silent
holder's lock, and exactly one winner among concurrent contenders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rae_framework.assembly import load_assembly
from rae_framework.cli import main
from rae_framework.engine.distributed import DistContext
from rae_framework.engine.run_lock import (LOCK_NAME, Holder, LockTimes, RunLock, _break, hold_run_lock, look,
                                           process_has_exited, process_start_ticks)
from rae_framework.engine.run_state import RunState, StageRecord
from rae_framework.errors import ConfigError, RunDirectoryLockedError
from rae_framework.sweep import expand, run_point

ASSEMBLY = """\
name: lock-unit
seed: 0
components:
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny}
  denoiser: {name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2}}
  schedule: {name: shifted-flow}
autoencoder: {noise_tau: 0.5}
data: {source: digits, image_size: 16}
stages:
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 2, batch_size: 16}
"""

FAST = LockTimes(heartbeat_s=0.05, stale_s=1.0)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and mtime (ns)."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*"))} | {".": (0, folder.stat().st_mtime_ns)}


def write_lock(folder: Path, holder: Holder, age_s: float = 0.0) -> Path:
    """A lock file as ``holder`` left it, its last heartbeat ``age_s`` ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(holder.to_text())
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def killed_holder() -> Holder:
    """The record a process on this machine would have written before it was killed with SIGKILL."""
    process = subprocess.Popen(["sleep", "60"])
    holder = replace(Holder.this_process(), pid=process.pid, process_start=process_start_ticks(process.pid),
                     command=["rae", "run", "killed.yaml"])
    process.send_signal(signal.SIGKILL)
    process.wait()
    return holder


def elsewhere() -> Holder:
    """A holder on another machine: its pid means nothing here, only its heartbeat does."""
    return replace(Holder.this_process(), host="node-b", machine="another-boot/pid:[1]", pid=4242)


def test_the_lock_names_its_holder_and_is_gone_after_release(tmp_path):
    run = tmp_path / "run"  # does not exist yet
    with RunLock.acquire(run, FAST) as lock:
        record = json.loads((run / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] and record["command"]
        assert record["started"].endswith("+00:00") and lock.held()
    assert list(run.iterdir()) == []


def test_a_second_acquirer_is_refused_with_the_holders_details_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "log.txt").write_text("first run\n")
    with RunLock.acquire(run, FAST):
        before = snapshot(run)
        with pytest.raises(RunDirectoryLockedError) as refused:
            RunLock.acquire(run, FAST)
        assert snapshot(run) == before
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and str(run / LOCK_NAME) in message and "Nothing was written" in message
    assert "host " in message and "started " in message and "command: " in message


def test_the_lock_of_a_killed_process_is_taken_over_and_the_console_says_so(tmp_path, capsys):
    dead = killed_holder()
    write_lock(tmp_path, dead)
    with RunLock.acquire(tmp_path, FAST) as lock:
        assert look(lock.path).holder.token == lock.holder.token
    console = capsys.readouterr().err
    assert f"took over the lock of run directory {tmp_path}" in console
    assert f"pid {dead.pid}" in console and f"its process {dead.pid} no longer runs" in console


def test_an_unreaped_zombie_does_not_keep_its_lock(tmp_path, capsys):
    """A killed torchrun's workers are reparented to pid 1, which in a container may never reap them: the
    zombie keeps its pid and start time, yet it has ended."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        zombie = replace(Holder.this_process(), pid=process.pid, process_start=process_start_ticks(process.pid))
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not process_has_exited(process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_has_exited(process.pid) and process_start_ticks(process.pid) == zombie.process_start
        write_lock(tmp_path, zombie)
        with RunLock.acquire(tmp_path, FAST):
            pass
        assert f"its process {process.pid} no longer runs" in capsys.readouterr().err
    finally:
        process.wait()
    assert not process_has_exited(os.getpid())


def test_a_reused_pid_does_not_keep_a_dead_holders_lock(tmp_path):
    alive = Holder.this_process()
    assert alive.gone() is False
    assert replace(alive, process_start=alive.process_start + 1).gone() is True  # same pid, another process
    assert elsewhere().gone() is None


def test_a_live_holder_on_this_machine_keeps_its_lock_however_old_its_heartbeat(tmp_path):
    write_lock(tmp_path, Holder.this_process(), age_s=3600)  # e.g. a job suspended with SIGSTOP
    with pytest.raises(RunDirectoryLockedError, match="last heartbeat 3600 s ago"):
        RunLock.acquire(tmp_path, FAST)


def test_a_holder_elsewhere_keeps_its_lock_while_its_heartbeat_is_fresh_and_loses_it_when_stale(tmp_path, capsys):
    path = write_lock(tmp_path, elsewhere(), age_s=0.5)
    with pytest.raises(RunDirectoryLockedError, match="held by host node-b, pid 4242"):
        RunLock.acquire(tmp_path, FAST)
    stamp = time.time() - 30
    os.utime(path, (stamp, stamp))
    with RunLock.acquire(tmp_path, FAST):
        pass
    assert "its heartbeat stopped 30 s ago (RAE_LOCK_STALE_S=1)" in capsys.readouterr().err


def test_a_requeued_slurm_job_takes_over_the_lock_its_earlier_run_left(tmp_path, monkeypatch, capsys):
    earlier = replace(elsewhere(), slurm_job="8812", slurm_restart=0)  # killed on node-b, heartbeat still young
    write_lock(tmp_path, earlier, age_s=0.2)
    monkeypatch.setenv("SLURM_JOB_ID", "8812")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # the same run (e.g. a second srun step): refused
    with pytest.raises(RunDirectoryLockedError):
        RunLock.acquire(tmp_path, FAST)
    monkeypatch.setenv("SLURM_JOB_ID", "9000")  # another job: refused
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.raises(RunDirectoryLockedError):
        RunLock.acquire(tmp_path, FAST)
    monkeypatch.setenv("SLURM_JOB_ID", "8812")  # the requeued job: takes over at once
    with RunLock.acquire(tmp_path, FAST) as lock:
        assert (lock.holder.slurm_job, lock.holder.slurm_restart) == ("8812", 1)
    assert "held by the run of SLURM job 8812 before its requeue (restart 0; this is restart 1)" in capsys.readouterr().err


def test_a_lock_record_without_the_slurm_fields_still_reads():
    record = json.loads(Holder.this_process().to_text())
    del record["slurm_job"], record["slurm_restart"]
    assert Holder.from_text(json.dumps(record)).slurm_job is None


def test_an_unreadable_lock_is_refused_while_young_and_taken_over_when_old(tmp_path):
    path = tmp_path / LOCK_NAME
    path.write_text("")  # its creator died (or is) between creating and writing it
    with pytest.raises(RunDirectoryLockedError, match="has not finished writing the lock file"):
        RunLock.acquire(tmp_path, FAST)
    os.utime(path, (time.time() - 30, time.time() - 30))
    with RunLock.acquire(tmp_path, FAST) as lock:
        assert look(path).holder == lock.holder


def test_the_heartbeat_refreshes_the_lock_file(tmp_path):
    with RunLock.acquire(tmp_path, FAST) as lock:
        stamp = time.time() - 100
        os.utime(lock.path, (stamp, stamp))
        deadline = time.monotonic() + 10
        while look(lock.path).age_s > 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert look(lock.path).age_s < 50


def test_a_holder_that_lost_its_lock_says_so_and_leaves_the_new_holders_file(tmp_path, capsys):
    lock = RunLock.acquire(tmp_path, FAST)
    lock.path.unlink()  # what a takeover after a stalled heartbeat does
    other = elsewhere()
    newer = write_lock(tmp_path, other)
    deadline = time.monotonic() + 10
    while "lost the lock" not in capsys.readouterr().err and time.monotonic() < deadline:
        time.sleep(0.02)
    assert time.monotonic() < deadline and not lock.held()
    lock.release()
    assert look(newer).holder == other


def test_a_slow_breaker_does_not_remove_the_lock_a_faster_one_took(tmp_path):
    path = write_lock(tmp_path, elsewhere(), age_s=30)
    judged_stale = look(path)  # contender B looks, then stalls
    with RunLock.acquire(tmp_path, FAST) as winner:  # contender A breaks the stale lock and takes it
        assert _break(path, judged_stale) is False  # B goes on with what it saw
        assert winner.held()


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_of_concurrent_contenders_exactly_one_holds_the_lock(tmp_path, stale):
    for attempt in range(10):
        folder = tmp_path / str(attempt)
        if stale:
            write_lock(folder, elsewhere(), age_s=30)
        start, done, outcomes = threading.Barrier(4), threading.Event(), []

        def contend():
            start.wait()
            try:
                with RunLock.acquire(folder, FAST):
                    outcomes.append("won")
                    done.wait(10)
            except RunDirectoryLockedError:
                outcomes.append("refused")

        threads = [threading.Thread(target=contend) for _ in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(outcomes) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        done.set()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
        assert sorted(path.name for path in folder.iterdir()) == []


def test_hold_run_lock_in_one_process_yields_the_lock_and_releases_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RAE_LOCK_HEARTBEAT_S", "0.05")
    monkeypatch.setenv("RAE_LOCK_STALE_S", "1")
    with hold_run_lock(tmp_path) as lock:
        assert lock.held() and lock.times == FAST
        with pytest.raises(RunDirectoryLockedError):
            with hold_run_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(("heartbeat", "stale", "match"), [
    ("abc", "300", "RAE_LOCK_HEARTBEAT_S='abc': expected a positive number"),
    ("30", "-1", "RAE_LOCK_STALE_S='-1': expected a positive number"),
    ("30", "60", "must be more than twice RAE_LOCK_HEARTBEAT_S=30"),
])
def test_bad_lock_times_are_named(heartbeat, stale, match):
    with pytest.raises(ConfigError, match=match):
        LockTimes.from_environment({"RAE_LOCK_HEARTBEAT_S": heartbeat, "RAE_LOCK_STALE_S": stale})


def test_lock_times_default_without_the_variables():
    assert LockTimes.from_environment({}) == LockTimes(30.0, 300.0)


def held_run(tmp_path: Path) -> Path:
    """A run directory with a file in it, whose lock another process (on another machine) holds."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latent_stats.safetensors").write_bytes(b"old")
    write_lock(run, elsewhere())
    return run


def test_a_sweep_point_on_a_held_folder_is_refused_before_it_adopts_anything(tmp_path):
    run = held_run(tmp_path)
    (tmp_path / "a.yaml").write_text(ASSEMBLY)
    assembly, (point,) = load_assembly(str(tmp_path / "a.yaml")), expand([], [0])
    donor = RunState(tmp_path / "donor", assembly, DistContext())  # has latent_stats with the same inputs
    output = donor.out_dir / "checkpoints" / "latent_stats.safetensors"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"donor's")
    donor.write_record(StageRecord.create("latent_stats", donor.input_hash("latent_stats"), [output], donor.out_dir))
    before = snapshot(run)
    with pytest.raises(RunDirectoryLockedError, match="held by host node-b"):
        run_point(point, assembly, run, donors=[donor.out_dir])
    assert snapshot(run) == before


def test_import_official_into_a_held_folder_exits_2_and_writes_nothing(tmp_path, capsys):
    run = held_run(tmp_path)
    (tmp_path / "a.yaml").write_text(ASSEMBLY)
    torch.save({"var": torch.ones(32, 2, 2)}, tmp_path / "stat.pt")  # readable: the lock is what refuses
    before = snapshot(run)
    assert main(["import-official", str(tmp_path / "a.yaml"), "--out", str(run), "--stats",
                 str(tmp_path / "stat.pt")]) == 2
    assert snapshot(run) == before and "is in use by another process" in capsys.readouterr().err
