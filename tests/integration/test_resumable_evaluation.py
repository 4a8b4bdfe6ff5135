"""An ``evaluate`` stage interrupted through the CLI keeps its finished metric states: after SIGKILL mid-metric
(of one process, or of a 2-process torchrun job finished by one process) the rerun resumes at the saved batch;
SIGTERM saves at once and exits 75. With ``save_every: 1`` the parts are single batches, merged in batch
order whatever the interruptions and world sizes, so the metrics equal the clean run's exactly."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from interrupting import finished_run, interrupted
from tiny_run import tiny_assembly

PSNR_BATCHES = 45  # the 90 held-out digits (5 %) reconstructed in batches of 2
ASSEMBLY = tiny_assembly("resume-evaluate", """\
  sample: {per_class: 4, batch_size: 20}
  evaluate: {metrics: [fid-tiny, psnr], batch_size: 2, save_every: 1}
""")


def saved_psnr_batches(out: Path) -> int:
    return len(list(out.glob("checkpoints/evaluate/*/psnr/part_*.safetensors")))


def metrics(out: Path) -> dict[str, float]:
    return json.loads((out / "metrics.json").read_text())


def resumed_batch(stderr: str) -> int:
    assert "evaluate: fid-tiny: kept the value computed before the interruption" in stderr, stderr[-3000:]
    match = re.search(rf"evaluate: psnr: resuming at batch (\d+) of {PSNR_BATCHES} \((\d+) done", stderr)
    assert match, stderr[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    folder = tmp_path_factory.mktemp("resumable-evaluation")
    assembly = folder / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    finished_run(assembly, folder / "clean")
    return assembly, metrics(folder / "clean")


@pytest.mark.slow
def test_sigkill_mid_metric_resumes_from_the_saved_states(tmp_path, clean_run):
    assembly, expected = clean_run
    out = tmp_path / "run"
    code, _ = interrupted(assembly, out, signal.SIGKILL, lambda: saved_psnr_batches(out) >= 20)
    assert code == -signal.SIGKILL
    assert resumed_batch(finished_run(assembly, out)) >= 20
    assert metrics(out) == expected


@pytest.mark.slow
def test_a_killed_two_process_evaluation_finished_by_one_process(tmp_path, clean_run):
    assembly, expected = clean_run
    out = tmp_path / "run"
    code, stderr = interrupted(assembly, out, signal.SIGKILL, lambda: saved_psnr_batches(out) >= 20, processes=2)
    assert code == -signal.SIGKILL, stderr[-3000:]
    resumed_batch(finished_run(assembly, out))  # fid-tiny was merged from both ranks' parts
    assert metrics(out) == expected


@pytest.mark.slow
def test_sigterm_saves_the_metric_state_and_exits_75(tmp_path, clean_run):
    assembly, expected = clean_run
    out = tmp_path / "run"
    code, stderr = interrupted(assembly, out, signal.SIGTERM, lambda: saved_psnr_batches(out) >= 10)
    assert code == 75, stderr[-3000:]
    match = re.search(rf"evaluate: preempted \(SIGTERM\) in metric 'psnr' at batch (\d+) of {PSNR_BATCHES}", stderr)
    assert match and "Traceback" not in stderr, stderr[-3000:]
    assert resumed_batch(finished_run(assembly, out)) == int(match.group(1))
    assert metrics(out) == expected
