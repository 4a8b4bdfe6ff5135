"""The task side of ``rae submit``: torchrun's variables from submitit's job environment, the engine's notice of
submitit's SIGUSR2, and who requeues after the engine's checkpoint."""

from __future__ import annotations

import os
import signal

import pytest

from rae_framework.engine.submitted import export_distributed_environment, requeue_through_submitit, submitit_signal
from rae_framework.engine.training import PreemptionNotice
from rae_framework.errors import PreemptedError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def job_environment(monkeypatch):
    """Set a job's variables; torchrun's are set to stale values first, so that the test's changes are undone."""
    for name in TORCHRUN_VARIABLES:
        monkeypatch.setenv(name, "stale")
    monkeypatch.delenv("MASTER_PORT")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")

    def set_variables(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
    return set_variables


def test_slurm_task_gets_torchrun_variables(job_environment):
    job_environment(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="4242", SLURM_NTASKS="16", SLURM_JOB_NUM_NODES="2",
                    SLURM_NODEID="1", SLURM_PROCID="9", SLURM_LOCALID="1", SLURM_JOB_NODELIST="gpu[017-018]")
    export_distributed_environment()
    assert {name: os.environ[name] for name in TORCHRUN_VARIABLES[:-1]} == {
        "RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8", "MASTER_ADDR": "gpu017"}
    port = os.environ["MASTER_PORT"]
    assert 20000 <= int(port) <= 60000  # drawn from the job id: every task of the job draws the same
    os.environ.pop("MASTER_PORT")
    assert export_distributed_environment().master_port == int(port)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"  # as under torchrun: rank r uses cuda:r


def test_a_set_master_port_is_kept(job_environment):
    job_environment(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="7", SLURM_NTASKS="2", SLURM_PROCID="0",
                    SLURM_LOCALID="0", SLURM_JOB_NODELIST="node1", MASTER_PORT="29511")
    assert export_distributed_environment().master_port == 29511 and os.environ["MASTER_PORT"] == "29511"


def test_local_task_gets_torchrun_variables(job_environment):
    job_environment(SUBMITIT_EXECUTOR="local", SUBMITIT_LOCAL_JOB_ID="99", SUBMITIT_LOCAL_NTASKS="2",
                    SUBMITIT_LOCAL_JOB_NUM_NODES="1", SUBMITIT_LOCAL_NODEID="0", SUBMITIT_LOCAL_GLOBALID="1",
                    SUBMITIT_LOCAL_LOCALID="1")
    environment = export_distributed_environment()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "1")
    assert environment.master_addr == os.environ["MASTER_ADDR"]


def test_the_training_notice_takes_submitits_signal_and_gives_the_handler_back():
    assert submitit_signal() == signal.SIGUSR2
    before = signal.getsignal(signal.SIGUSR2)
    with PreemptionNotice() as notice:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert notice.received == signal.SIGUSR2
    assert signal.getsignal(signal.SIGUSR2) is before


@pytest.fixture
def submitit_handler():
    """A handler on submitit's signal that records its calls, in place of submitit's (which requeues and exits)."""
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: calls.append(number))
    yield calls
    signal.signal(signal.SIGUSR2, previous)


@pytest.mark.parametrize(("received", "handed_over"), [(signal.SIGUSR2, True), (signal.SIGUSR1, True),
                                                       (None, True), (signal.SIGTERM, False)],
                         ids=["SIGUSR2", "SIGUSR1", "another-rank", "SIGTERM"])
def test_a_notice_goes_to_submitits_requeue_except_sigterm(submitit_handler, received, handed_over):
    error = PreemptedError("preempted", received)
    with pytest.raises(PreemptedError) as raised:
        requeue_through_submitit(error)
    assert raised.value is error  # ranks that submitit does not end (rank > 0) raise the engine's error
    assert submitit_handler == ([signal.SIGUSR2] if handed_over else [])


def test_without_submitits_handler_the_error_is_raised():
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)  # outside a submitit task: nothing to hand over
    try:
        with pytest.raises(PreemptedError):
            requeue_through_submitit(PreemptedError("preempted", signal.SIGUSR2))
    finally:
        signal.signal(signal.SIGUSR2, previous)
