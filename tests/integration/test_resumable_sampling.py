"""A ``sample`` stage killed at any moment continues from its last finished batch, through the CLI: SIGKILL at
about 80 % (one process), SIGKILL of a 2-process torchrun job finished by one process, SIGTERM (exit 75 and
the row it resumes at). Each time ``samples.npz`` is byte for byte the uninterrupted run's."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import numpy as np
import pytest

from interrupting import finished_run, interrupted
from tiny_run import tiny_assembly

BATCHES, ROWS = 10, 80  # digits: 10 classes x 8 per class, batches of 8
ASSEMBLY = tiny_assembly("resume-sample", "  sample: {per_class: 8, batch_size: 8, grid_columns: 4}\n").replace(
    "sampler: {name: euler, preset: euler-tiny}", "sampler: {name: euler, params: {num_steps: 40}}")  # ~0.3 s a batch


def finished_batches(out: Path) -> int:
    return len(list(out.glob("checkpoints/sample/*/chunk_*.npy")))


def interrupted_at(assembly: Path, out: Path, number: int, batches: int, processes: int = 1) -> tuple[int, str]:
    """The run interrupted by ``number`` once ``batches`` sample batches are on disk."""
    return interrupted(assembly, out, number, lambda: finished_batches(out) >= batches, processes)


def assert_same_samples(clean: Path, out: Path) -> None:
    expected, got = clean / "samples" / "samples.npz", out / "samples" / "samples.npz"
    with np.load(expected) as left, np.load(got) as right:
        assert sorted(left.keys()) == sorted(right.keys()) == ["arr_0", "arr_1"]
        assert all(np.array_equal(left[key], right[key]) for key in left.keys())
    assert expected.read_bytes() == got.read_bytes()


def resumed_row(stderr: str, done: int) -> int:
    match = re.search(rf"sample: resuming at row (\d+) of {ROWS} \((\d+) of {BATCHES} batches done", stderr)
    assert match, stderr[-3000:]
    assert int(match.group(2)) >= done
    return int(match.group(1))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[Path, Path]:
    """The assembly and the run directory of its uninterrupted single-process run."""
    folder = tmp_path_factory.mktemp("resumable-sampling")
    assembly = folder / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    finished_run(assembly, folder / "clean")
    return assembly, folder / "clean"


@pytest.mark.slow
def test_sigkill_at_80_percent_resumes_to_the_clean_samples(tmp_path, clean_run):
    assembly, clean = clean_run
    code, _ = interrupted_at(assembly, tmp_path / "run", signal.SIGKILL, batches=8)
    assert code == -signal.SIGKILL and not (tmp_path / "run" / "samples" / "samples.npz").exists()
    stderr = finished_run(assembly, tmp_path / "run")
    assert resumed_row(stderr, done=8) >= 64
    assert_same_samples(clean, tmp_path / "run")


@pytest.mark.slow
def test_a_killed_two_process_run_finished_by_one_process_equals_the_clean_samples(tmp_path, clean_run):
    assembly, clean = clean_run
    code, stderr = interrupted_at(assembly, tmp_path / "run", signal.SIGKILL, batches=5, processes=2)
    assert code == -signal.SIGKILL, stderr[-3000:]
    stderr = finished_run(assembly, tmp_path / "run")
    resumed_row(stderr, done=5)
    assert_same_samples(clean, tmp_path / "run")


@pytest.mark.slow
def test_sigterm_stops_after_the_batch_exits_75_and_names_the_row(tmp_path, clean_run):
    assembly, clean = clean_run
    code, stderr = interrupted_at(assembly, tmp_path / "run", signal.SIGTERM, batches=3)
    assert code == 75, stderr[-3000:]
    match = re.search(rf"sample: preempted \(SIGTERM\) at row (\d+) of {ROWS}; (\d+) of {BATCHES} batches saved",
                      stderr)
    assert match and "Traceback" not in stderr, stderr[-3000:]
    assert resumed_row(finished_run(assembly, tmp_path / "run"), done=int(match.group(2))) == int(match.group(1))
    assert_same_samples(clean, tmp_path / "run")
