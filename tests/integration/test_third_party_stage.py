"""A third-party stage (examples/third_party_stage) installed from its own package: listed with its provenance,
placed in the run order by its spec, run through the CLI, skipped when up to date, refused by --stage before
what it reads exists, and passing rae-framework's stage contract."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from templates import install_template, run

ASSEMBLY = """\
name: probe-run
components:
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny}
data: {source: digits, image_size: 16, holdout_fraction: 0.2}
stages:
  latent_probe: {max_images: 96, steps: 30, batch_size: 48}
  latent_stats: {batch_size: 256}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The stage template installed with pip into its own folder."""
    return install_template("third_party_stage", tmp_path_factory.mktemp("stage_plugin"))


@pytest.fixture
def assembly(tmp_path) -> Path:
    path = tmp_path / "probe.yaml"
    path.write_text(textwrap.dedent(ASSEMBLY))
    return path


@pytest.mark.slow
def test_listed_validated_and_ordered_by_its_spec(installed, assembly, tmp_path):
    listed = run(["-m", "rae_framework", "list", "stage", "--json"], installed, tmp_path)
    (entry,) = [item for item in json.loads(listed.stdout) if item["name"] == "latent_probe"]
    assert (entry["plugin"], entry["distribution"]) == ("latent_probe", "rae-latent-probe")
    plan = run(["-m", "rae_framework", "validate", str(assembly)], installed, tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "1. latent_stats" in plan.stdout and "2. latent_probe" in plan.stdout and "probe.json" in plan.stdout
    typo = run(["-m", "rae_framework", "validate", str(assembly), "--set", "stages.latent_probe.stepz=3"],
               installed, tmp_path)
    assert typo.returncode == 2 and "stages.latent_probe.stepz" in typo.stderr


@pytest.mark.slow
def test_runs_through_the_cli_and_is_skipped_when_up_to_date(installed, assembly, tmp_path):
    out = tmp_path / "run"
    early = run(["-m", "rae_framework", "run", str(assembly), "--out", str(out), "--stage", "latent_probe"],
                installed, tmp_path)
    assert early.returncode == 2 and "reads the outputs of stage 'latent_stats'" in early.stderr
    first = run(["-m", "rae_framework", "run", str(assembly), "--out", str(out)], installed, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "latent_probe: done" in first.stderr and "probe.json" in first.stderr
    probe = json.loads((out / "probe.json").read_text())
    assert probe["train_images"] == 96 and 0.1 < probe["holdout_accuracy"] <= 1.0
    again = run(["-m", "rae_framework", "run", str(assembly), "--out", str(out)], installed, tmp_path)
    assert again.returncode == 0 and "latent_probe: skipped, outputs up to date" in again.stderr


@pytest.mark.slow
def test_passes_the_stage_contract(installed, tmp_path):
    own = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(installed.parent / "src" / "tests")],
              installed, tmp_path)
    assert own.returncode == 0 and " passed" in own.stdout, own.stdout[-3000:]


@pytest.mark.slow
def test_a_training_stage_on_the_shared_loop_runs_and_resumes_bit_for_bit(installed, tmp_path):
    """encoder_distill (one file on rae_framework.engine.train): trains through the CLI, checkpoints, and a run
    resumed from an earlier step checkpoint ends with the same student weights."""
    from safetensors.torch import load_file

    path = tmp_path / "distill.yaml"
    path.write_text(textwrap.dedent(ASSEMBLY).replace(
        "  latent_probe: {max_images: 96, steps: 30, batch_size: 48}",
        "  encoder_distill: {steps: 6, batch_size: 16, checkpoint_every: 2, keep_last: 3, log_every: 1}"))
    out = tmp_path / "run"
    first = run(["-m", "rae_framework", "run", str(path), "--out", str(out)], installed, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "encoder_distill step 6/6" in first.stderr and "encoder_distill: done" in first.stderr
    student = out / "checkpoints" / "student.safetensors"
    clean = load_file(str(student))
    checkpoints = out / "checkpoints" / "encoder_distill"
    assert sorted(p.name for p in checkpoints.glob("step_*")) == ["step_00000002", "step_00000004", "step_00000006"]
    for name in ("step_00000004", "step_00000006"):  # as if killed after the checkpoint of step 2
        shutil.rmtree(checkpoints / name)
    student.unlink()
    resumed = run(["-m", "rae_framework", "run", str(path), "--out", str(out)], installed, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "encoder_distill: resumed from step 2" in resumed.stderr
    again = load_file(str(student))
    assert clean.keys() == again.keys() and all(torch.equal(clean[key], again[key]) for key in clean)
