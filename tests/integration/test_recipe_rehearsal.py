"""Every recipe of examples/recipes/ rehearsed end to end through the CLI, in miniature.

Only sizes shrink: the weight-bearing components (encoder, decoder, denoisers, discriminator, perceptual)
take their '-tiny' preset (random weights, offline) and the metrics their '-tiny' variant (random features
instead of the Inception, whose weights cannot be downloaded here); steps, batches, image sizes and sample
counts become small; the data is a generated ImageNet-layout folder of JPEGs (10 classes), or for a
``webdataset`` recipe tar shards of captioned digits written with webdataset's ShardWriter, and ADM's
reference batch a generated .npz with ``arr_0`` and precomputed ``mu``/``sigma``/``mu_s``/``sigma_s``.
Everything else is the recipe's own: its stages, their settings, the data transform, schedules, samplers,
guidance, metric families, the checkpoints one run hands the next (``runs/...`` paths, resolved from the
working directory as a user's would be). The chain runs in the recipes' order: stage 1, stage 2, sampling.
One stage-2 recipe and the text-to-image recipe run under ``torchrun --nproc_per_node=2`` (gloo); the text
conditioner takes its tiny random Qwen2 (``text-qwen2-tiny``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from rae_framework.session import Session
from rae_framework.testing.digit_shards import write_digit_shards

REPOSITORY = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPOSITORY / "examples" / "recipes").glob("*.yaml"))
SIZE, CLASSES = 16, 10  # the tiny decoder's output side; the tiny denoisers' class count
TINY_ROLES = ("encoder", "decoder", "denoiser", "guide", "discriminator", "perceptual", "conditioner")
TINY_PRESETS = {"text": "text-qwen2-tiny"}  # components whose tiny preset is not '<name>-tiny'
TORCHRUN_RECIPES = ("imagenet256-dit-dh-s.yaml", "t2i256-scale-rae-siglip2-qwen2.5.yaml")
DERIVED = {"in_channels", "input_size", "token_dim", "num_patches", "latent_shape"}
STAGE_SIZES = {
    "train_decoder": {"steps": 2, "batch_size": 4, "checkpoint_every": 1, "sample_every": 2, "eval_images": 4,
                      "discriminator_start_step": 0, "gan_start_step": 1, "log_every": 1},
    "latent_stats": {"batch_size": 8},
    "train_denoiser": {"steps": 3, "batch_size": 4, "grad_accumulation": 1, "checkpoint_every": 2, "log_every": 1},
    "sample": {"per_class": 1, "batch_size": 5},
    "evaluate": {"batch_size": 8},
}


def phase(path: Path) -> int:
    """Stage-1 recipes first, then stage-2 training, then sampling (each reads the earlier runs)."""
    text = path.name
    return 0 if "-rae-" in text else 2 if "sample" in text else 1


def make_folder(root: Path, count: int, seed: int) -> Path:
    """An ImageNet-layout folder: CLASSES class subfolders of ``count`` JPEGs (24 x 20 px, not square)."""
    generator = np.random.default_rng(seed)
    for label in range(CLASSES):
        folder = root / f"n{label:08d}"
        folder.mkdir(parents=True)
        for index in range(count):
            pixels = generator.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{index}.JPEG", quality=90)
    return root


def make_adm_npz(path: Path, session: Session) -> Path:
    """A reference batch in ADM's layout whose statistics are those of the tiny features (random-conv-tiny)."""
    images = np.random.default_rng(3).integers(0, 255, (24, SIZE, SIZE, 3), dtype=np.uint8)
    extractor = session.build("feature_extractor", "random-conv", preset="random-conv-tiny").eval()
    with torch.no_grad():
        features = extractor(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    stats = {}
    for suffix, values in (("", features.pool), ("_s", features.spatial)):
        values = values.double().numpy()
        stats[f"mu{suffix}"], stats[f"sigma{suffix}"] = values.mean(0), np.cov(values, rowvar=False)
    np.savez(path, arr_0=images, **stats)
    return path


def tiny_component(spec: dict, presets: set[str]) -> dict:
    """The component on its '-tiny' preset; params that the preset or the encoder sets give way."""
    tiny = TINY_PRESETS.get(spec["name"], f"{spec['name']}-tiny")
    assert tiny in presets, f"no {tiny} preset to rehearse {spec}"
    params = {key: value for key, value in (spec.get("params") or {}).items() if key not in DERIVED}
    return {**spec, "preset": tiny, "params": params}


def shrink_data(data: dict, data_root: Path, shards: str) -> dict:
    """The recipe's data section on the generated images: the folder, or the shards for a webdataset recipe."""
    if data.get("source") == "webdataset":
        return {**data, "shards": shards, "image_size": SIZE, "num_workers": 0}
    return {**data, "root": str(data_root), "image_size": SIZE, "num_workers": 0}


def shrink(recipe: dict, data_root: Path, val_root: Path, npz: Path, presets: dict[str, set[str]],
           shards: str = "") -> dict:
    """The recipe with only its sizes shrunk (see the module docstring)."""
    for role, spec in recipe["components"].items():
        if role in TINY_ROLES:
            recipe["components"][role] = tiny_component(spec, presets[spec.get("kind") or role])
            if spec.get("checkpoint"):  # a kept step of a shrunk run: its save_at becomes step 1
                recipe["components"][role]["checkpoint"] = re.sub(r"step_\d{8}", "step_00000001", spec["checkpoint"])
    recipe["data"] = shrink_data(recipe.get("data", {}), data_root, shards)
    recipe["data"].pop("resize_to", None)  # the recipe's 384/768 -> the default 1.5 x image_size
    for name, settings in recipe.get("stages", {}).items():
        settings.update(STAGE_SIZES.get(name, {}))
        if settings.get("save_at"):
            settings["save_at"] = [1]
        optimizer = settings.get("optimizer")
        if optimizer:
            optimizer.update(warmup_steps=min(optimizer.get("warmup_steps", 0), 1),
                             hold_steps=min(optimizer.get("hold_steps", 0), 1))
        if name == "evaluate":
            settings["metrics"] = [f"{metric}-tiny" for metric in settings["metrics"]]
            if settings.get("reference"):
                settings["reference"] = str(npz if str(settings["reference"]).endswith(".npz") else val_root)
    return recipe


def cli(args: list[str], cwd: Path, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    return subprocess.run([*(launcher or [sys.executable]), "-m", "rae_framework", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]


@pytest.mark.slow(seconds=100)  # twelve runs: started first under xdist (tests/conftest.py)
def test_every_recipe_runs_end_to_end_in_miniature(tmp_path):
    session = Session()
    presets = {kind: {preset.name for preset in session.presets.all(kind)} for kind in session.registry.kinds}
    data_root, val_root = make_folder(tmp_path / "train", 3, 0), make_folder(tmp_path / "val", 1, 1)
    npz = make_adm_npz(tmp_path / "adm_reference.npz", session)
    shards = write_digit_shards(tmp_path / "shards", count=30, per_shard=10, size=20)
    assert len(RECIPES) >= 10
    for path in sorted(RECIPES, key=lambda recipe: (phase(recipe), recipe.name)):
        recipe = shrink(yaml.safe_load(path.read_text()), data_root, val_root, npz, presets, shards)
        small = tmp_path / path.name
        small.write_text(yaml.safe_dump(recipe, sort_keys=False))
        out = f"runs/{recipe['name'].replace('imagenet256-rae-', 'imagenet256-').replace('imagenet512-rae-', 'imagenet512-')}"
        launcher = TORCHRUN if path.name in TORCHRUN_RECIPES else None
        done = cli(["run", str(small), "--out", out], tmp_path, launcher)
        assert done.returncode == 0, f"{path.name}:\n{done.stderr[-4000:]}"
        check_outputs(tmp_path / out, recipe)


def check_outputs(run: Path, recipe: dict) -> None:
    """What the recipe's stages write is there; evaluation wrote every metric it asked for."""
    stages = recipe.get("stages", {})
    if "train_denoiser" in stages and stages["train_denoiser"].get("save_at"):
        assert (run / "checkpoints" / "train_denoiser" / "step_00000001" / "ema.safetensors").is_file()
    if "sample" in stages:
        with np.load(run / "samples" / "samples.npz") as samples:
            rows = len(stages["sample"].get("prompts") or range(CLASSES)) * stages["sample"]["per_class"]
            assert samples["arr_0"].shape == (rows, SIZE, SIZE, 3)
    if "evaluate" in stages:
        metrics = json.loads((run / "metrics.json").read_text())
        assert len(metrics) >= len(stages["evaluate"]["metrics"]), metrics
        assert all(np.isfinite(value) for value in metrics.values()), metrics
