"""``rae submit`` in-process with the real plugins: the sbatch script of ``--dry-run``, the checks made before
anything is queued (exit 2), and a submission through submitit's SlurmExecutor to a stand-in ``sbatch``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from submitit.core.utils import DelayedSubmission

import rae_framework
from rae_framework import cli
from rae_framework.engine.submitted import SubmittedRun
from rae_framework.errors import ConfigError
from rae_framework.submit import parse_time

ASSEMBLY = """\
name: submit-unit
components:
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny}
  denoiser: {name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2}}
  schedule: {name: shifted-flow}
data: {source: digits, image_size: 16}
stages:
  latent_stats: {batch_size: 64}
  train_denoiser: {steps: 10, batch_size: 16}
"""
CLUSTER = ["--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu-preempt", "--time", "1-12:00:00",
           "--account", "lab", "--qos", "low", "--mem", "0", "--cpus-per-task", "10"]


@pytest.fixture
def assembly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text(ASSEMBLY)
    return tmp_path / "a.yaml"


def submit(capsys, *arguments: str) -> tuple[int, str, str]:
    code = cli.main(["submit", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_prints_the_sbatch_script_of_one_job_of_nodes_x_gpus_tasks(assembly, capsys):
    code, script, err = submit(capsys, str(assembly), "--out", "run", *CLUSTER, "--dry-run")
    assert code == 0, err
    lines = set(script.splitlines())
    folder = assembly.parent / "run" / "submitit"
    assert {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
            "#SBATCH --partition=gpu-preempt", "#SBATCH --time=2160", "#SBATCH --signal=USR2@120",
            "#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --account=lab", "#SBATCH --qos=low",
            "#SBATCH --mem=0", "#SBATCH --cpus-per-task=10", "#SBATCH --job-name=submit-unit",
            f"#SBATCH --output={folder}/%j_0_log.out"} <= lines
    assert script.splitlines()[-1].startswith(f"srun --unbuffered --output {folder}/%j_%t_log.out")
    assert f"-m submitit.core._submit {folder}" in script
    assert "dry run: nothing submitted (2 nodes x 8 tasks (16 processes, 8 GPUs per node)" in err
    assert not (assembly.parent / "run").exists()  # nothing written


def test_dry_run_options_reach_the_script(assembly, capsys):
    code, script, err = submit(capsys, str(assembly), "--gpus-per-node", "0", "--tasks-per-node", "4", "--time", "90",
                               "--signal-delay-s", "300", "--job-name", "mine", "--folder", "logs", "--dry-run")
    assert code == 0, err
    lines = set(script.splitlines())
    assert {"#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=4", "#SBATCH --time=90", "#SBATCH --signal=USR2@300",
            "#SBATCH --job-name=mine", f"#SBATCH --error={assembly.parent / 'logs'}/%j_0_log.err"} <= lines
    assert not any(line.startswith("#SBATCH --gpus-per-node") for line in lines)  # a CPU job asks for no GPU


@pytest.mark.parametrize(("arguments", "message"), [
    (["--gpus-per-node", "8"], "--time is required for SLURM"),
    (["--gpus-per-node", "8", "--time", "1:30:30"], "--time 1:30:30: whole minutes only"),
    (["--gpus-per-node", "8", "--time", "ten"], "--time ten: expected MINUTES, HH:MM:SS"),
    (["--gpus-per-node", "8", "--time", "0"], "the time limit must be positive"),
    (["--gpus-per-node", "8", "--tasks-per-node", "4", "--time", "9"], "one task per GPU"),
    (["--gpus-per-node", "0", "--time", "9"], "needs --tasks-per-node N"),
    (["--gpus-per-node", "-1", "--time", "9"], "--gpus-per-node -1: expected 0 or more"),
    (["--gpus-per-node", "8", "--time", "9", "--mem", "64 GB"], "--mem 64 GB: expected sbatch's form"),
    (["--gpus-per-node", "8", "--time", "1", "--signal-delay-s", "60"], "--signal-delay-s 60: must lie within"),
    (["--gpus-per-node", "3", "--time", "9"],
     "stages.train_denoiser.batch_size 16 is not divisible by 3 processes x grad_accumulation 1: the job runs "
     "1 node x 3 tasks"),
    (["--gpus-per-node", "8", "--time", "9", "--stage", "sample"], "--stage sample: stage 'sample' is not enabled"),
    (["--gpus-per-node", "8", "--time", "9", "--stage", "train_denoiser"],
     "it reads the outputs of stage 'latent_stats', which has not finished"),
    (["--gpus-per-node", "8", "--time", "9", "--set", "stages.train_denoiser.steps=x"],
     "--set stages.train_denoiser.steps=x: stages.train_denoiser.steps"),
    (["--gpus-per-node", "2", "--nodes", "2", "--local"], "--local runs on this machine: --nodes 2 needs SLURM"),
    (["--gpus-per-node", "2", "--time", "9", "--local", "--dry-run"], "choose one"),
    (["--gpus-per-node", "8", "--time", "9", "--max-timeouts", "-1"], "--max-timeouts -1: expected 0 or more"),
])
def test_what_cannot_run_is_refused_before_queueing_with_exit_2(assembly, capsys, arguments, message):
    code, out, err = submit(capsys, str(assembly), *arguments, "--dry-run" if "--local" not in arguments else "--local")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert out == ""


def test_a_broken_assembly_is_reported_with_its_line(assembly, capsys):
    assembly.write_text(ASSEMBLY.replace("steps: 10", "steps: -1"))
    code, _, err = submit(capsys, str(assembly), "--gpus-per-node", "8", "--time", "9", "--dry-run")
    assert code == 2 and f"{assembly}:10: stages.train_denoiser.steps" in err


@pytest.mark.parametrize(("text", "minutes"), [("90", 90), ("04:00:00", 240), ("2-00:00:00", 2880), ("1-12", 2160),
                                               ("0-00:30", 30), ("48:00:00", 2880)])
def test_slurm_time_forms_become_minutes(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["1:30", "abc", "1-", "-5", "00:00:00"])
def test_other_time_forms_are_refused(text):
    with pytest.raises(ConfigError, match=f"--time {text}"):
        parse_time(text)


def test_without_srun_submission_is_refused_with_the_alternatives(assembly, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = submit(capsys, str(assembly), *CLUSTER)
    assert code == 1 and "no srun on this machine" in err and "--dry-run" in err and "--local" in err


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_submission_sbatches_the_dry_run_script_and_pickles_the_run(assembly, capsys, monkeypatch, tmp_path):
    """A stand-in SLURM (``srun`` for submitit's check, an ``sbatch`` that records its script and answers as
    sbatch does) receives exactly the dry run's script; the pickled job is our callable, checkpointable."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    _executable(bin_folder / "srun", "#!/bin/sh\nexit 0\n")
    _executable(bin_folder / "sbatch", f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    code, dry, err = submit(capsys, str(assembly), "--out", "run", *CLUSTER, "--dry-run")
    assert code == 0, err
    code, out, err = submit(capsys, str(assembly), "--out", "run", *CLUSTER)
    assert code == 0, err
    folder = assembly.parent / "run" / "submitit"
    assert "submitted job 4242: 2 nodes x 8 tasks (16 processes, 8 GPUs per node), time limit 2160 min" in out
    assert f"logs: {folder}/4242_<task>_log.out" in out and "scancel 4242" in out
    assert (tmp_path / "submitted.sh").read_text() == dry
    submitted = DelayedSubmission.load(folder / "4242_submitted.pkl")
    run = submitted.function
    assert isinstance(run, SubmittedRun) and submitted.args == () and submitted.kwargs == {}
    assert run.out_dir == str(assembly.parent / "run") and run.workdir == str(assembly.parent)
    validated = rae_framework.load_assembly(str(assembly))
    assert run.assembly_yaml == validated.to_yaml() == run.assembly().to_yaml()  # what was validated, resolved
    assert submitted._timeout_min == 2160 and submitted._timeout_countdown == 3  # submitit's requeue budget
    again = run.checkpoint()  # what submitit pickles before it requeues: the same run, resuming from disk
    assert isinstance(again, DelayedSubmission) and again.function == run and again.args == ()
