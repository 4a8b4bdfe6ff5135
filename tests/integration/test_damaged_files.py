"""Damaged files and full disks through the CLI: a cut latest checkpoint is named, set aside and the run resumes
from the previous one; a full disk at a checkpoint exits 1 naming the folder and its free space, the previous
checkpoint stays good, and the rerun with space finishes; a stage output changed after its stage finished is
named and written again from the last checkpoint. All end with the clean run's weights, bit for bit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from small_disk import resize, small_disk

from rae_framework.engine.checkpoints import CheckpointManager
from tiny_run import tiny_assembly

ASSEMBLY = tiny_assembly("damaged-tiny", """\
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 6, batch_size: 16, checkpoint_every: 2, keep_last: 2, log_every: 1}
""")
FINAL = ("denoiser.safetensors", "denoiser_ema.safetensors")
LAUNCHER = Path(__file__).with_name("full_disk_launcher.py")


def run(assembly: Path, out: Path, *launcher: str) -> subprocess.CompletedProcess:
    """``rae run assembly --out out`` (through ``launcher`` when given), its stderr captured."""
    prefix = [str(LAUNCHER), *launcher] if launcher else ["-m", "rae_framework"]
    return subprocess.run([sys.executable, *prefix, "run", str(assembly), "--out", str(out)], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=300)


def assert_clean_weights(out: Path, clean: Path) -> None:
    for name in FINAL:
        got, expected = load_file(str(out / "checkpoints" / name)), load_file(str(clean / "checkpoints" / name))
        assert got.keys() == expected.keys() and all(torch.equal(got[key], expected[key]) for key in expected)


def pages(paths) -> int:
    return sum(-(-path.stat().st_size // 4096) * 4096 for path in paths if path.is_file())


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[Path, Path]:
    """The assembly and the run directory of its uninterrupted run."""
    folder = tmp_path_factory.mktemp("damaged")
    assembly = folder / "tiny.yaml"
    assembly.write_text(ASSEMBLY)
    clean = run(assembly, folder / "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    return assembly, folder / "clean"


@pytest.mark.slow
def test_a_truncated_latest_checkpoint_resumes_from_the_previous_one(tmp_path, clean_run):
    assembly, clean = clean_run
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    steps = out / "checkpoints" / "train_denoiser"
    assert sorted(path.name for path in steps.glob("step_*")) == ["step_00000004", "step_00000006"]
    cut = steps / "step_00000006" / "model.safetensors"
    os.truncate(cut, cut.stat().st_size // 2)
    cut_size = cut.stat().st_size
    for name in FINAL:  # so that the stage runs again (its record no longer matches)
        (out / "checkpoints" / name).unlink()

    rerun = run(assembly, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"WARNING train_denoiser: checkpoint step 6 is damaged: {cut} is truncated" in rerun.stderr
    assert "train_denoiser: resumed from step 4" in rerun.stderr and "Traceback" not in rerun.stderr
    assert (steps / "step_00000006.damaged" / "model.safetensors").stat().st_size == cut_size  # kept as it was
    assert_clean_weights(out, clean)


@pytest.mark.slow
def test_a_damaged_stage_output_is_named_and_written_again_from_the_last_checkpoint(tmp_path, clean_run):
    assembly, clean = clean_run
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    damaged = out / "checkpoints" / "denoiser_ema.safetensors"
    data = bytearray(damaged.read_bytes())
    data[-5] ^= 0x10  # a flipped bit in the weights: the file still parses, only its recorded sha256 tells
    damaged.write_bytes(bytes(data))

    rerun = run(assembly, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert ("WARNING train_denoiser: finished before, but since then checkpoints/denoiser_ema.safetensors went "
            "missing or changed") in rerun.stderr
    assert "train_denoiser: resumed from step 6" in rerun.stderr and "latent_stats: skipped" in rerun.stderr
    assert_clean_weights(out, clean)


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_exits_1_and_the_rerun_finishes(tmp_path, clean_run):
    assembly, clean = clean_run
    out = tmp_path / "run"
    shutil.copytree(clean, out)  # the statistics and the latent cache are reused: only train_denoiser runs
    folder = out / "checkpoints" / "train_denoiser"
    one_checkpoint = pages((folder / "step_00000006").iterdir())
    marker = (folder / "inputs.json").read_bytes()
    shutil.rmtree(folder)
    for name in FINAL:
        (out / "checkpoints" / name).unlink()
    # Room for the marker and one and a half checkpoints: step 2 fits, step 4 (written beside it) does not.
    with small_disk(folder, 4096 + one_checkpoint * 3 // 2) as disk:
        (folder / "inputs.json").write_bytes(marker)
        failed = run(assembly, out) if disk is not None else run(assembly, out, "4")
        assert failed.returncode == 1, failed.stderr[-3000:]
        message = re.search(r"error: the disk is full: writing checkpoint step_00000004 into (\S+) failed "
                            r"\(No space left on device; ([\d.]+ [kMGT]?B) free\)", failed.stderr)
        assert message and message.group(1) == str(folder), failed.stderr[-3000:]
        assert "Traceback" not in failed.stderr
        assert sorted(path.name for path in folder.iterdir()) == ["inputs.json", "step_00000002"]  # no temp folder
        assert CheckpointManager(folder).load()[1]["step"] == 2

        if disk is not None:
            resize(disk, 8 * one_checkpoint)
        rerun = run(assembly, out)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "train_denoiser: resumed from step 2" in rerun.stderr
        assert_clean_weights(out, clean)
