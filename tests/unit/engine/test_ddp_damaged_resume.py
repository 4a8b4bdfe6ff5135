"""Two processes under torchrun resume past a damaged checkpoint: rank 0 finds it, both ranks load the previous
one, and the run ends with the weights it had before the damage."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_ddp import launch


def finish(process) -> str:
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors[-3000:]
    return errors


@pytest.mark.slow
def test_both_ranks_resume_from_the_checkpoint_before_a_damaged_one(tmp_path):
    out = tmp_path / "ddp"
    finish(launch(out, 6, processes=2, accumulation=2))
    shutil.copytree(out, tmp_path / "first")
    cut = out / "ckpt" / "step_00000006" / "ema.safetensors"
    os.truncate(cut, cut.stat().st_size - 100)

    errors = finish(launch(out, 6, processes=2, accumulation=2))
    assert f"checkpoint step 6 is damaged: {cut} is truncated" in errors
    assert "train_denoiser: resumed from step 4" in errors
    for name in ("model", "ema"):
        got, expected = (load_file(str(folder / f"final_{name}.safetensors")) for folder in (out, tmp_path / "first"))
        assert all(torch.equal(got[key], expected[key]) for key in expected)
