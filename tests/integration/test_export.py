"""``rae export`` end to end: a tiny run trained through the CLI, exported, read by diffusers' own
``AutoencoderRAE.from_pretrained`` (encode and decode within 1e-5 of ours), loaded back with ``load_exported``
(samples equal to ``load_run``'s), and sampled from a Hub repo id out of a local Hugging Face cache, offline."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import rae_framework
from rae_framework import cli

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]
# The DINOv2 that AutoencoderRAE builds (head dim 64, HF image size 518, 4 registers), small: patch 2 at 32 px
# gives the 16 x 16 token grid whose sin-cos table diffusers regenerates; decoder patch 1 -> 16 px images.
ASSEMBLY = """
name: export-tiny
seed: 0
components:
  encoder: {name: dinov2, params: {pretrained: false, input_size: 32,
            overrides: {patch_size: 2, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 1, image_size: 518}}}
  decoder: {name: vit, params: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, patch_size: 1}}
  denoiser: {name: dit-dh, params: {in_channels: 64, input_size: 16, patch_size: 4, hidden_size: [64, 64],
             depth: [1, 1], num_heads: [2, 2], num_classes: 10}}
  schedule: {name: shifted-flow}
  sampler: {name: euler, preset: euler-tiny}
  guidance: {name: cfg, preset: cfg-tiny}
data: {source: digits, image_size: 16, holdout_fraction: 0.9}
stages:
  train_decoder: {steps: 1, batch_size: 4, eval_images: 4, perceptual_weight: 0, gan_weight: 0}
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 1, batch_size: 4}
  sample: {per_class: 1}
"""
REPO_ID = "rae-tests/export-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    (folder / "tiny.yaml").write_text(ASSEMBLY)
    with contextlib.redirect_stdout(io.StringIO()):  # `rae run` in this process (no second interpreter start-up)
        assert cli.main(["run", str(folder / "tiny.yaml"), "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def exported(run_dir) -> Path:
    out = run_dir.parent / "exported"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # in this process: `rae export` is cli.main
        assert cli.main(["export", str(run_dir), str(out), "--format", "diffusers", "--repo-id", REPO_ID]) == 0
    assert f"huggingface-cli upload {REPO_ID} {out}" in printed.getvalue()
    return out


def cli_code(capsys, *args: str) -> tuple[int, str]:
    """``rae ARGS`` in this process (no interpreter start-up): exit code and stderr."""
    code = cli.main(list(args))
    return code, capsys.readouterr().err


def test_diffusers_loads_the_vae_and_computes_what_ours_does(run_dir, exported):
    from diffusers import AutoencoderRAE

    theirs, info = AutoencoderRAE.from_pretrained(exported / "vae", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ours = rae_framework.load_run(run_dir, device="cpu")
    config = json.loads((exported / "vae" / "config.json").read_text())
    assert config["latents_mean"] is not None and config["latents_std"] is not None  # the run's statistics
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latents = ours.rae.encode(images)  # (3, 64, 16, 16), normalised
        torch.testing.assert_close(theirs.eval().encode(images).latent, latents, atol=1e-5, rtol=0)
        torch.testing.assert_close(theirs.decode(latents).sample, ours.rae.decode(latents), atol=1e-5, rtol=0)


def test_load_exported_samples_what_load_run_samples(run_dir, exported):
    original, loaded = rae_framework.load_run(run_dir, device="cpu"), rae_framework.load_exported(exported, "cpu")
    assert type(loaded) is type(original)
    for kind in ("pt", "latent"):
        ours = original([0, 3, 9], num_images_per_label=2, seed=4, output_type=kind, progress_bar=False).images
        theirs = loaded([0, 3, 9], num_images_per_label=2, seed=4, output_type=kind, progress_bar=False).images
        assert torch.equal(ours, theirs), kind
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(original.encode(images), loaded.encode(images))
    assert loaded.class_names == original.class_names and loaded.latent_shape == original.latent_shape
    assert rae_framework.load_run(exported, device="cpu").weight_sources == loaded.weight_sources  # same loader


def test_folder_layout_and_model_card(run_dir, exported):
    for name in ("vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/rae_framework.safetensors",
                 "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "classes.json", "samples/grid.png", "README.md"):
        assert (exported / name).is_file(), name
    assert (exported / "samples" / "grid.png").read_bytes() == (run_dir / "samples" / "grid.png").read_bytes()
    transformer = json.loads((exported / "transformer" / "config.json").read_text())
    assert transformer["name"] == "dit-dh" and transformer["params"]["hidden_size"] == [64, 64]
    scheduler = json.loads((exported / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["sampler"]["name"], scheduler["guidance"]["params"]["scale"]) == ("euler", 3.0)
    card = (exported / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    metadata = yaml.safe_load(front)
    assert metadata["library_name"] == "rae-framework" and metadata["license"] == "mit"
    assert metadata["pipeline_tag"] == "unconditional-image-generation" and "rae" in metadata["tags"]
    for expected in ("AutoencoderRAE.from_pretrained(\"rae-tests/export-tiny\", subfolder=\"vae\")",
                     "rae_framework.load_exported(\"rae-tests/export-tiny\")", "![samples](samples/grid.png)",
                     "name: export-tiny", "train_denoiser:"):
        assert expected in body, expected


def test_export_refuses_a_non_empty_folder_an_unknown_format_and_an_unfinished_run(run_dir, exported, tmp_path,
                                                                                  capsys):
    code, err = cli_code(capsys, "export", str(run_dir), str(exported), "--format", "diffusers")
    assert code == 2 and "not empty" in err and "--force" in err
    assert cli_code(capsys, "export", str(run_dir), str(exported), "--format", "diffusers", "--force",
                    "--repo-id", REPO_ID)[0] == 0
    code, err = cli_code(capsys, "export", str(run_dir), str(tmp_path / "x"), "--format", "onnx")
    assert code == 2 and "expected one of diffusers" in err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished, ignore=shutil.ignore_patterns("denoiser_ema.safetensors"))
    code, err = cli_code(capsys, "export", str(unfinished), str(tmp_path / "y"), "--format", "diffusers")
    assert code == 2 and "denoiser_ema.safetensors: missing" in err and "train_denoiser" in err
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y.partial*"))


def test_rae_sample_reads_a_hub_repo_from_the_local_cache_offline(exported, tmp_path, capsys):
    cache = tmp_path / "hub"
    repo = cache / f"models--{REPO_ID.replace('/', '--')}"
    shutil.copytree(exported, repo / "snapshots" / COMMIT)  # the hub cache layout: a snapshot and refs/main
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "HF_HUB_CACHE": str(cache)}
    script = ("import sys; from rae_framework import cli; "  # a fresh process: the cache folder is read at import
              f"code = cli.main(['sample', '{REPO_ID}', '--labels', '1,2', '--per-label', '2', "
              f"'--npz', {str(tmp_path / 's.npz')!r}]); "
              "assert 'diffusers' not in sys.modules, 'loading an export needs no diffusers'; sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert cli_code(capsys, "sample", str(exported), "--labels", "1,2", "--per-label", "2",
                    "--npz", str(tmp_path / "l.npz"))[0] == 0
    assert (tmp_path / "s.npz").read_bytes() == (tmp_path / "l.npz").read_bytes()
    code, err = cli_code(capsys, "sample", "rae-tests/not-there", "--labels", "1", "--out", str(tmp_path / "n.png"))
    assert code == 2 and "'rae-tests/not-there'" in err and "huggingface-cli download rae-tests/not-there" in err


def test_an_autoguided_run_exports_its_guide(run_dir, tmp_path):
    """The run's assembly, sampled with autoguidance (a guide: its EMA denoiser, perturbed): the export carries
    guide/ and samples what load_run samples."""
    from safetensors.torch import load_file, save_file

    guided = tmp_path / "guided"
    shutil.copytree(run_dir, guided)
    generator = torch.Generator().manual_seed(0)
    weights = load_file(str(guided / "checkpoints" / "denoiser_ema.safetensors"))
    save_file({key: value + 0.05 * torch.randn(value.shape, generator=generator) for key, value in weights.items()},
              str(guided / "guide.safetensors"))
    assembly = yaml.safe_load((guided / "assembly.yaml").read_text())
    denoiser = assembly["components"]["denoiser"]
    assembly["components"]["guide"] = {"kind": "denoiser", "name": denoiser["name"], "params": denoiser["params"],
                                       "checkpoint": str(guided / "guide.safetensors")}
    assembly["components"]["guidance"] = {"name": "autoguidance", "preset": "autoguidance-tiny"}
    (guided / "assembly.yaml").write_text(yaml.safe_dump(assembly, sort_keys=False))
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["export", str(guided), str(tmp_path / "out"), "--format", "diffusers"]) == 0
    assert (tmp_path / "out" / "guide" / "diffusion_pytorch_model.safetensors").is_file()
    original, loaded = rae_framework.load_run(guided, "cpu"), rae_framework.load_exported(tmp_path / "out", "cpu")
    ours = original([2, 5], seed=1, output_type="pt", progress_bar=False).images
    assert torch.equal(ours, loaded([2, 5], seed=1, output_type="pt", progress_bar=False).images)
    assert not torch.equal(ours, loaded([2, 5], seed=1, guidance="none", output_type="pt", progress_bar=False).images)
