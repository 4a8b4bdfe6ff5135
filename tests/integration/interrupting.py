"""Runs of ``rae run`` interrupted from outside, as a scheduler or a dying node would: helpers shared by the
end-to-end resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rae_framework.engine.run_lock import process_has_exited

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def command(assembly: Path, out: Path, processes: int = 1) -> list[str]:
    """``rae run ASSEMBLY --out OUT``, under torchrun (standalone, one node) for more than one process."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
                     str(processes)]
    return [*launcher, "-m", "rae_framework", "run", str(assembly), "--out", str(out)]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, children first (torchrun starts its workers in sessions of their own, so
    killing its process group would leave them running)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children += [int(child) for child in (task / "children").read_text().split()]
    return [tree_pid for child in children for tree_pid in process_tree(child)] + [pid]


def interrupted(assembly: Path, out: Path, number: int, ready: Callable[[], bool],
                processes: int = 1) -> tuple[int, str]:
    """Start a run and, once ``ready()``, send ``number``: SIGKILL to each of its processes (a dead node), any
    other signal to the launched process (a scheduler's notice). Returns the exit code and stderr."""
    process = subprocess.Popen(command(assembly, out, processes), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=ENV)
    while not ready() and process.poll() is None:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be interrupted"
    targets = process_tree(process.pid) if number == signal.SIGKILL else [process.pid]
    for pid in targets:
        os.kill(pid, number)
    code, stderr = process.wait(timeout=300), process.communicate(timeout=60)[1]
    if number == signal.SIGKILL:  # a dead node's processes are gone before anything reruns
        wait_until_exited(targets)
    return code, stderr


def wait_until_exited(pids: list[int], timeout_s: float = 60.0) -> None:
    """Wait until every pid is gone or a zombie (its orphans are reaped by pid 1, if ever)."""
    deadline = time.monotonic() + timeout_s
    while any(Path(f"/proc/{pid}").exists() and not process_has_exited(pid) for pid in pids):
        assert time.monotonic() < deadline, f"killed processes {pids} still run after {timeout_s} s"
        time.sleep(0.01)


def finished_run(assembly: Path, out: Path) -> str:
    """Run to the end in one process (asserting exit 0); returns stderr."""
    finished = subprocess.run(command(assembly, out), capture_output=True, text=True, env=ENV, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stderr
