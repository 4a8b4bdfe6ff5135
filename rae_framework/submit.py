"""``rae submit``: an assembly as one SLURM job of ``nodes x tasks_per_node`` tasks (one per GPU), through
submitit's :class:`~submitit.SlurmExecutor`, or here through its :class:`~submitit.LocalExecutor` (``--local``).

Every task runs :class:`~rae_framework.engine.submitted.SubmittedRun` (what ``rae run`` does under torchrun;
preemption and requeue are described there). What happens here, before anything is queued: the assembly is
validated (exit 2, as ``rae validate``), and so are the ``--stage`` selection, the stages it reads and every
training stage's global batch against the world size. ``--dry-run`` prints the sbatch script that would be
submitted and submits nothing; it needs no SLURM on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from submitit import LocalExecutor, SlurmExecutor
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.helpers import clean_env

from rae_framework.assembly import load_assembly
from rae_framework.data.datasets import rank_share
from rae_framework.engine.distributed import DistContext
from rae_framework.engine.run_state import RunState
from rae_framework.engine.runner import check_upstream, selected_stages
from rae_framework.engine.submitted import SubmittedRun
from rae_framework.errors import ConfigError, PreemptedError, RAEError
from rae_framework.session import Session
from rae_framework.stage import TrainingStageConfig

LOCAL_TIME_MIN = 24 * 60  # --local without --time: the local executor's hard limit
TIME_FORMS = "MINUTES, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<hours>\d+)(?::(?P<minutes>\d{2})(?::(?P<seconds>\d{2}))?)?$")
_MEMORY = re.compile(r"^\d+[KMGT]?$")
_TRACE_RULE = "-" * 22 + "\n"  # around the task's traceback in submitit's FailedJobError


@dataclass(frozen=True)
class Resources:
    """What the job asks for: its shape, time limit and notice, and the sbatch options a site may need."""

    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    time_min: int
    signal_delay_s: int
    job_name: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    mem: str | None = None  # sbatch --mem, e.g. 64G or 0 (all of the node's memory)
    cpus_per_task: int | None = None

    @property
    def world_size(self) -> int:
        """The number of processes: one per task."""
        return self.nodes * self.tasks_per_node

    def describe(self) -> str:
        """``2 nodes x 8 tasks (16 processes, 8 GPUs per node)``."""
        gpus = f", {self.gpus_per_node} GPUs per node" if self.gpus_per_node else ", no GPU"
        return (f"{self.nodes} node{'s' if self.nodes > 1 else ''} x {self.tasks_per_node} tasks "
                f"({self.world_size} processes{gpus})")

    def sbatch_parameters(self) -> dict[str, Any]:
        """:meth:`submitit.SlurmExecutor.update_parameters` keywords (sbatch's names); ``--requeue`` makes the job
        eligible for requeueing on preemption or node failure."""
        optional = {"partition": self.partition, "account": self.account, "qos": self.qos, "mem": self.mem,
                    "cpus_per_task": self.cpus_per_task, "gpus_per_node": self.gpus_per_node or None}
        return {"job_name": self.job_name, "nodes": self.nodes, "ntasks_per_node": self.tasks_per_node,
                "time": self.time_min, "signal_delay_s": self.signal_delay_s,
                **{key: value for key, value in optional.items() if value is not None},
                "additional_parameters": {"requeue": True}}

    def local_parameters(self) -> dict[str, Any]:
        """:meth:`submitit.LocalExecutor.update_parameters` keywords: the same tasks, notice and time limit."""
        return {"tasks_per_node": self.tasks_per_node, "gpus_per_node": self.gpus_per_node,
                "timeout_min": self.time_min, "signal_delay_s": self.signal_delay_s}


def parse_time(text: str) -> int:
    """SLURM's time limit forms (``90``, ``04:00:00``, ``2-00:00:00``, ...) -> whole minutes."""
    if text.isdigit():
        minutes = int(text)
    else:
        match = _TIME.match(text)
        if match is None or (match["days"] is None and match["seconds"] is None):
            raise ConfigError(f"--time {text}: expected {TIME_FORMS}")
        if int(match["seconds"] or 0):
            raise ConfigError(f"--time {text}: whole minutes only (submitit hands sbatch a number of minutes)")
        minutes = (int(match["days"] or 0) * 24 + int(match["hours"])) * 60 + int(match["minutes"] or 0)
    if minutes <= 0:
        raise ConfigError(f"--time {text}: the time limit must be positive")
    return minutes


def resources_from(args: argparse.Namespace, job_name: str) -> Resources:
    """The options of ``rae submit`` as :class:`Resources`; a ConfigError for any that cannot work."""
    if args.gpus_per_node < 0:
        raise ConfigError(f"--gpus-per-node {args.gpus_per_node}: expected 0 or more")
    tasks = args.tasks_per_node or args.gpus_per_node
    if tasks == 0:
        raise ConfigError("--gpus-per-node 0 (a CPU job) needs --tasks-per-node N, the processes per node")
    if args.gpus_per_node and tasks != args.gpus_per_node:
        raise ConfigError(f"--tasks-per-node {tasks} with --gpus-per-node {args.gpus_per_node}: one task per GPU "
                          "(leave --tasks-per-node out)")
    if args.mem is not None and not _MEMORY.match(args.mem):
        raise ConfigError(f"--mem {args.mem}: expected sbatch's form, e.g. 64G, 500000M or 0 (all of it)")
    if args.time is None and not args.local:
        raise ConfigError("--time is required for SLURM (e.g. --time 04:00:00): the job checkpoints and "
                          "requeues itself --signal-delay-s before it")
    time_min = parse_time(args.time) if args.time is not None else LOCAL_TIME_MIN
    if args.signal_delay_s < 0 or args.signal_delay_s >= time_min * 60:
        raise ConfigError(f"--signal-delay-s {args.signal_delay_s}: must lie within the time limit "
                          f"({time_min} min)")
    return Resources(args.nodes, tasks, args.gpus_per_node, time_min, args.signal_delay_s, args.job_name or job_name,
                     args.partition, args.account, args.qos, args.mem, args.cpus_per_task)


def check_before_queueing(assembly, stages: list[str] | None, out_dir: Path, resources: Resources) -> None:
    """What would fail at the job's start, found now: unknown or disabled ``--stage`` names, stages read but
    not finished in ``out_dir``, and global batches that the world size does not divide."""
    chosen = selected_stages(assembly, stages)
    check_upstream(RunState(out_dir, assembly, DistContext()), chosen)
    for name in chosen:
        settings = assembly.stages[name]
        if isinstance(settings, TrainingStageConfig) and hasattr(settings, "batch_size"):
            try:
                rank_share(settings.batch_size, 0, resources.world_size, getattr(settings, "grad_accumulation", 1),
                           where=f"stages.{name}.batch_size")
            except ConfigError as error:
                raise ConfigError(f"{error}: the job runs {resources.describe()}") from None


def _ignored_with_local(args: argparse.Namespace) -> list[str]:
    options = ("partition", "account", "qos", "mem", "cpus_per_task")
    return [f"--{name.replace('_', '-')}" for name in options if getattr(args, name) is not None]


def submit_command(args: argparse.Namespace, session: Session) -> int:
    """``rae submit``: validate, then print the script (``--dry-run``), run here (``--local``) or queue the job."""
    if args.dry_run and args.local:
        raise ConfigError("--dry-run prints the sbatch script; --local runs without one: choose one")
    if args.local and args.nodes > 1:
        raise ConfigError(f"--local runs on this machine: --nodes {args.nodes} needs SLURM")
    if args.max_timeouts < 0:
        raise ConfigError(f"--max-timeouts {args.max_timeouts}: expected 0 or more")
    assembly = load_assembly(args.assembly, args.overrides, session=session)
    for warning in assembly.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    resources = resources_from(args, assembly.name)
    out_dir = Path(args.out or Path("runs") / assembly.name).absolute()
    check_before_queueing(assembly, args.stages, out_dir, resources)
    folder = Path(args.folder).absolute() if args.folder else out_dir / "submitit"
    run = SubmittedRun(assembly.to_yaml(), f"{args.assembly} (as submitted)", str(out_dir), os.getcwd(),
                       tuple(args.stages) if args.stages else None)
    if args.dry_run:
        print(sbatch_script(folder, resources, args.max_timeouts), end="")
        print(f"dry run: nothing submitted ({resources.describe()}, run directory {out_dir})", file=sys.stderr)
        return 0
    if args.local:
        for option in _ignored_with_local(args):
            print(f"warning: {option} is ignored with --local", file=sys.stderr)
        return run_locally(run, folder, resources, args.max_timeouts)
    return queue_on_slurm(run, folder, resources, args.max_timeouts)


class RenderingSlurmExecutor(SlurmExecutor):
    """submitit's SlurmExecutor without its check for ``srun``, to render the script where SLURM is absent
    (``--dry-run``); it is never asked to submit."""

    @classmethod
    def affinity(cls) -> int:
        return 1


def slurm_executor(folder: Path, resources: Resources, max_timeouts: int, *,
                   render_only: bool = False) -> SlurmExecutor:
    """submitit's SlurmExecutor with the job's parameters (``render_only``: a :class:`RenderingSlurmExecutor`)."""
    try:
        executor = (RenderingSlurmExecutor if render_only else SlurmExecutor)(folder, max_num_timeout=max_timeouts)
    except RuntimeError:  # submitit found no srun
        raise RAEError("rae submit: no srun on this machine, so no SLURM to submit to; --dry-run prints the "
                       "sbatch script, --local runs the job here") from None
    executor.update_parameters(**resources.sbatch_parameters())
    return executor


def sbatch_script(folder: Path, resources: Resources, max_timeouts: int) -> str:
    """The sbatch script that :func:`queue_on_slurm` would submit, as submitit writes it (it runs the pickled
    job of ``folder``, which only a submission writes)."""
    executor = slurm_executor(folder, resources, max_timeouts, render_only=True)
    return executor._make_submission_file_text(executor._submitit_command_str, "dry-run")


def queue_on_slurm(run: SubmittedRun, folder: Path, resources: Resources, max_timeouts: int) -> int:
    """sbatch the job; print its id and where its logs go."""
    executor = slurm_executor(folder, resources, max_timeouts)
    try:
        with clean_env():  # a job submitted from inside another keeps none of its SLURM/torch variables
            job = executor.submit(run)
    except FailedJobError as error:  # sbatch refused: its message says why
        raise RAEError(f"sbatch refused the job: {error}") from None
    print(f"submitted job {job.job_id}: {resources.describe()}, time limit {resources.time_min} min, "
          f"run directory {run.out_dir}")
    print(f"  logs: {folder}/{job.job_id}_<task>_log.out / .err (task 0 logs the run)")
    print(f"  follow: tail -f {folder}/{job.job_id}_0_log.err; stop: scancel {job.job_id}")
    return 0


def run_locally(run: SubmittedRun, folder: Path, resources: Resources, max_timeouts: int) -> int:
    """Run the job's tasks on this machine with submitit's LocalExecutor and wait for them (requeues included)."""
    executor = LocalExecutor(folder, max_num_timeout=max_timeouts)
    executor.update_parameters(**resources.local_parameters())
    with clean_env():
        job = executor.submit(run)
    print(f"job {job.job_id} running here: {resources.describe()}; logs: {folder}/{job.job_id}_<task>_log.err",
          file=sys.stderr)
    try:
        result = job.results()[0]
    except KeyboardInterrupt:
        job.cancel()
        raise
    except UncompletedJobError as error:  # FailedJobError too: a task raised, or the job never finished
        raise _job_failure(str(error), folder / f"{job.job_id}_0_log.err") from None
    print(result.report("run finished"))
    return 0


def _job_failure(message: str, log: Path) -> RAEError:
    """The job's failure as this framework's error, with the last line of the failing task's traceback; a
    preemption that was not requeued (SIGTERM) stays one (exit 75)."""
    parts = message.split(_TRACE_RULE)  # submitit's message: the task's traceback between two rules
    lines = [line for line in (parts[1] if len(parts) > 2 else message).splitlines() if line.strip()]
    last = lines[-1] if lines else message
    if last.startswith(f"{PreemptedError.__module__}.{PreemptedError.__name__}: "):
        return PreemptedError(f"the job stopped: {last.split(': ', 1)[1]}; log: {log}")
    return RAEError(f"the job failed: {last}; log: {log}")

