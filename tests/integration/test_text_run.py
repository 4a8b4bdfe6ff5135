"""A tiny text-to-image run end to end on the CPU: captions derived from the digit classes ('a seven'), a tiny
random Qwen2 conditioner, DiT^DH with the text path, CFG with the empty prompt; then ``rae sample --prompt`` and
``pipe("a prompt")`` over the finished run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import rae_framework
from rae_framework import cli
from rae_framework.errors import ConfigError

ASSEMBLY = """
name: text-tiny
seed: 0
components:
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny}
  conditioner: {name: text, preset: text-qwen2-tiny}
  denoiser: {name: dit-dh, preset: dit-dh-text-tiny}
  schedule: {name: shifted-flow}
  sampler: {name: euler, preset: euler-tiny}
  guidance: {name: cfg, params: {scale: 3.0}}
data: {source: digits, image_size: 16}
stages:
  train_decoder: {steps: 1, batch_size: 8}
  latent_stats: {batch_size: 600}
  train_denoiser: {steps: 2, batch_size: 8, latent_cache: false}
  sample: {per_class: 1, batch_size: 10}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    (folder / "text.yaml").write_text(ASSEMBLY)
    command = [sys.executable, "-m", "rae_framework", "run", str(folder / "text.yaml"), "--out", str(folder / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "run"


def test_the_assembly_derives_the_text_widths(tmp_path):
    (tmp_path / "a.yaml").write_text(ASSEMBLY)
    params = rae_framework.load_assembly(str(tmp_path / "a.yaml")).spec("denoiser").params
    assert (params["text_dim"], params["pooled_dim"]) == (32, 32)


@pytest.mark.slow
def test_text_run_samples_one_caption_per_class(run_dir):
    with np.load(run_dir / "samples" / "samples.npz") as samples:
        assert samples["arr_0"].shape == (10, 16, 16, 3) and samples["arr_1"].tolist() == list(range(10))


@pytest.mark.slow
def test_rae_sample_with_prompts_and_the_pipeline(run_dir, tmp_path):
    grid = tmp_path / "grid.png"
    assert cli.main(["sample", str(run_dir), "--prompt", "a seven", "--prompt", "a one", "--per-label", "1",
                     "--out", str(grid), "--device", "cpu"]) == 0
    assert grid.is_file()
    assert cli.main(["sample", str(run_dir), "--labels", "7", "--out", str(grid)]) == 2  # a text run takes prompts
    pipe = rae_framework.load_run(run_dir, device="cpu")
    output = pipe("a seven", num_images_per_label=2, seed=0, output_type="np", progress_bar=False)
    again = pipe(["a seven"], num_images_per_label=2, seed=0, output_type="np", progress_bar=False)
    assert output.images.shape == (2, 16, 16, 3) and output.prompts == ["a seven"] * 2
    assert np.array_equal(output.images, again.images)
    with pytest.raises(ConfigError, match="prompts"):
        pipe(3)
