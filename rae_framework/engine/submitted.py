"""What runs in each task of a job that ``rae submit`` launched through submitit (on SLURM or locally).

:class:`SubmittedRun` is the pickled callable. In every task it exports torchrun's variables from submitit's
job environment (SLURM's ``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NTASKS``, ``SLURM_JOB_NODELIST``, or the
local executor's equivalents), then runs the assembly as ``rae run`` does under ``torchrun``:
:func:`~rae_framework.engine.runner.run_assembly`, whose :func:`~rae_framework.engine.distributed.init_distributed`
joins the process group from those variables. So a job of ``N`` tasks trains what ``torchrun
--nproc_per_node=N`` trains, bit for bit.

Preemption and requeue (submitit's notice is SIGUSR2, ``#SBATCH --signal=USR2@<delay>``):

- SIGUSR2 (or SIGUSR1) during a training stage: the engine's :class:`~rae_framework.engine.training.PreemptionNotice`
  lets every rank finish the step, rank 0 checkpoints it, :class:`~rae_framework.errors.PreemptedError` is raised;
  then :func:`requeue_through_submitit` hands the notice to submitit's own handler, which on rank 0 calls
  :meth:`SubmittedRun.checkpoint` (inherited from :class:`submitit.helpers.Checkpointable`: this callable
  again), saves it as the job's pickle, requeues the job (``scontrol requeue``; locally the requeue exit code)
  and exits; the other ranks raise and end.
- SIGTERM (SLURM preempting the job, or ``scancel``): the engine checkpoints the same way and the job ends.
  SLURM requeues a preempted job itself (``PreemptMode=REQUEUE``; the script asks ``--requeue``), never a
  cancelled one, as submitit, which ignores SIGTERM.
- A notice outside a training stage goes straight to submitit's handler (the other stages restart their work).

A requeued job calls this again on the same run directory: finished stages are skipped, training resumes from
its newest checkpoint.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import NoReturn

from submitit.helpers import Checkpointable, JobEnvironment, TorchDistributedEnvironment

from rae_framework.assembly import Assembly, validate_assembly
from rae_framework.engine.runner import RunResult, run_assembly
from rae_framework.errors import PreemptedError
from rae_framework.session import Session
from rae_framework.yaml_lines import load_yaml_with_lines


@dataclass(frozen=True)
class SubmittedRun(Checkpointable):
    """``run_assembly`` of an assembly validated at submit time, in every task of a submitit job.

    The assembly travels as its resolved YAML, so that the job (and every requeue of it) runs what was
    validated, whatever happens to the file afterwards; relative paths in it mean what they meant in
    ``workdir``, the directory ``rae submit`` ran in."""

    assembly_yaml: str  # Assembly.to_yaml() of the validated assembly
    origin: str  # where it came from, for messages
    out_dir: str  # the run directory, absolute
    workdir: str  # the submitting shell's directory, absolute
    stages: tuple[str, ...] | None = None  # --stage: run only these

    def __call__(self) -> RunResult:
        """Run the assembly in this task; returns the :class:`~rae_framework.engine.runner.RunResult`."""
        os.chdir(self.workdir)
        export_distributed_environment()
        try:
            return run_assembly(self.assembly(), self.out_dir, stages=list(self.stages) if self.stages else None)
        except PreemptedError as error:
            requeue_through_submitit(error)

    def assembly(self) -> Assembly:
        """The assembly, validated again in this task (the same plugins resolve it as at submit time)."""
        data, source_map = load_yaml_with_lines(self.assembly_yaml, self.origin)
        return validate_assembly(data, source_map, session=Session(), source=self.origin)


def export_distributed_environment() -> TorchDistributedEnvironment:
    """Set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` (the job's first node)
    and ``MASTER_PORT`` (``MASTER_PORT`` when set, else a port drawn from the job id, the same in every task)
    from submitit's job environment. ``CUDA_VISIBLE_DEVICES`` stays as SLURM set it: rank ``r`` uses
    ``cuda:LOCAL_RANK``, as under torchrun."""
    return TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


def submitit_signal() -> signal.Signals:
    """The signal submitit checkpoints and requeues on (SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says else)."""
    return signal.Signals[f"SIG{JobEnvironment.USR_SIG}"]


def requeue_through_submitit(error: PreemptedError) -> NoReturn:
    """After the engine's checkpoint: a notice other than SIGTERM goes to submitit's handler of its signal
    (when one is installed: inside a submitit task), which on rank 0 checkpoints this callable, requeues the
    job and exits; on the other ranks it returns, and ``error`` is raised (so it is on SIGTERM: SLURM requeues
    a preempted job itself and a cancelled one stays cancelled)."""
    number = submitit_signal()
    handler = signal.getsignal(number)
    if error.signal != signal.SIGTERM and callable(handler):
        handler(number, None)
    raise error
