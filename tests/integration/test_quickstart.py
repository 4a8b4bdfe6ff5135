"""The quickstart end to end through the CLI, shortened by ``--set`` overrides, and its run directory layout."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
QUICKSTART = REPOSITORY / "examples" / "quickstart.yaml"
PER_CLASS = 2
SHORT = [  # a few steps of every stage; everything else exactly as the README's command
    "stages.train_decoder.steps=4", "stages.train_decoder.batch_size=16", "stages.train_decoder.sample_every=2",
    "stages.train_decoder.eval_images=16", "stages.train_denoiser.steps=4", "stages.train_denoiser.batch_size=16",
    f"stages.sample.per_class={PER_CLASS}", "stages.sample.batch_size=10", "components.sampler.params.num_steps=3",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m rae_framework ARGS`` from the repository root (the encoder path is relative to it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rae_framework", *args], cwd=REPOSITORY, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A shortened quickstart run (about half a minute on 2 cores)."""
    out = tmp_path_factory.mktemp("quickstart") / "run"
    overrides = [item for pair in SHORT for item in ("--set", pair)]
    result = run_cli("run", str(QUICKSTART), "--out", str(out), *overrides)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.slow
def test_samples_are_in_the_adm_layout_with_equal_classes(run_dir):
    with np.load(run_dir / "samples" / "samples.npz") as payload:
        images, labels = payload["arr_0"], payload["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (10 * PER_CLASS, 32, 32, 3)
    assert labels.dtype == np.int64 and np.bincount(labels, minlength=10).tolist() == [PER_CLASS] * 10


@pytest.mark.slow
def test_grid_png_shows_one_row_per_class(run_dir):
    with Image.open(run_dir / "samples" / "grid.png") as grid:
        width, height = grid.size
    assert height >= 10 * 32 and width >= PER_CLASS * 32


@pytest.mark.slow
def test_metrics_json_has_finite_reconstruction_metrics(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"psnr", "ssim"} <= set(metrics)
    assert all(math.isfinite(value) for value in metrics.values())


@pytest.mark.slow
def test_checkpoints_and_resolved_assembly_are_written(run_dir):
    checkpoints = run_dir / "checkpoints"
    for name in ("decoder_ema.safetensors", "denoiser_ema.safetensors", "latent_stats.safetensors"):
        with safe_open(str(checkpoints / name), "pt") as weights:
            assert list(weights.keys()), name
    resolved = yaml.safe_load((run_dir / "assembly.yaml").read_text())
    assert resolved["components"]["schedule"]["params"]["latent_shape"] == [64, 4, 4]  # derived, not copied
    assert resolved["components"]["denoiser"]["params"]["in_channels"] == 64


@pytest.mark.slow
def test_rerun_skips_every_finished_stage(run_dir):
    overrides = [item for pair in SHORT for item in ("--set", pair)]
    result = run_cli("run", str(QUICKSTART), "--out", str(run_dir), *overrides)
    assert result.returncode == 0, result.stdout + result.stderr
    log = (run_dir / "log.txt").read_text()
    assert log.count("skipped, outputs up to date") == 5


@pytest.mark.slow
def test_classifier_check_reads_the_run(run_dir):
    sys.path.insert(0, str(REPOSITORY / "examples" / "quickstart"))
    try:
        from classifier_check import check
    finally:
        sys.path.remove(str(REPOSITORY / "examples" / "quickstart"))
    result = check(run_dir / "samples" / "samples.npz")
    assert result["count"] == 10 * PER_CLASS and len(result["generated"]["per_class"]) == 10
    assert result["real_holdout"]["overall"] > 0.95  # the checker itself recognises real digits
