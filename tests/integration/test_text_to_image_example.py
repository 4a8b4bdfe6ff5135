"""The text miniature (examples/text_to_image/): captions from the digits' stroke mass and slant with held-out
combinations, loaded through ``data.captions``; and its assembly end to end through the CLI, shortened."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from rae_framework.data.captions import caption_source
from rae_framework.data.config import DataConfig

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLE = REPOSITORY / "examples" / "text_to_image"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"text_to_image_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def captions_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("text_captions")
    load("make_captions").write(out)
    return out


def test_attributes_read_mass_and_slant_from_the_ink():
    attributes = load("attributes")
    upright = np.zeros((1, 8, 8))
    upright[0, :, 3] = 1.0
    leaning = np.zeros((1, 8, 8))
    leaning[0, np.arange(8), 7 - np.arange(8)] = 1.0  # top right to bottom left: leans right
    assert attributes.slant(upright)[0] == pytest.approx(0.0) and attributes.slant(leaning)[0] == pytest.approx(1.0)
    assert attributes.stroke_mass(np.ones((2, 8, 8))).tolist() == [64.0, 64.0]


def test_captions_are_deterministic_and_hold_the_combinations_out(captions_folder):
    make_captions = load("make_captions")
    rows, summary = make_captions.build()
    assert (captions_folder / "captions.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in rows)
    texts = {row["caption"] for row in rows}
    held = {item["prompt"] for item in summary["held_out"]}
    assert held and not held & texts
    assert len(texts) == 40 - len(held) + len({item["digit"] for item in summary["held_out"]})  # + 'a three', ...
    found = np.array(summary["attributes"])  # (N, 2): each attribute splits every digit about in half
    assert 0.4 < found[:, 0].mean() < 0.6 and 0.4 < found[:, 1].mean() < 0.6


def test_the_jsonl_loads_through_data_captions(captions_folder):
    captions = caption_source(DataConfig(source="digits", captions=str(captions_folder / "captions.jsonl")))
    first = captions.captions([(0, False), (1, True)], torch.zeros(2, dtype=torch.long))
    assert all(text.startswith("a ") for text in first) and len(captions.rows) == 1617


@pytest.mark.slow
def test_the_text_quickstart_assembly_runs_through_the_cli(captions_folder, tmp_path):
    assembly = yaml.safe_load((EXAMPLE / "text_quickstart.yaml").read_text())
    assembly["data"]["captions"] = str(captions_folder / "captions.jsonl")
    assembly["components"]["sampler"]["params"]["num_steps"] = 2
    stages = assembly["stages"]
    stages["train_decoder"].update(steps=1, batch_size=8, checkpoint_every=1, sample_every=1, eval_images=8)
    stages["train_denoiser"].update(steps=2, batch_size=8, checkpoint_every=2, latent_cache=False)
    stages["sample"].update(per_class=1, batch_size=2, prompts=["a bold, slanted three", "a thin, upright one"])
    del stages["evaluate"]
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(assembly))
    done = subprocess.run([sys.executable, "-m", "rae_framework", "run", str(tmp_path / "text.yaml"), "--out",
                           str(tmp_path / "run")], cwd=REPOSITORY, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp_path / "run" / "samples" / "samples.npz") as samples:
        assert samples["arr_0"].shape == (2, 32, 32, 3) and samples["arr_1"].tolist() == [0, 1]
