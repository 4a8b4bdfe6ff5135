"""`rae import`: a diffusers AutoencoderRAE (a folder diffusers wrote, or a Hub repo id in the cache) -> a run
directory whose assembly trains stage 2 on it, with the encoder, decoder and statistics diffusers computes with.

The folders are written by diffusers itself (``AutoencoderRAE(...).save_pretrained``) or by our exporter; the
Hub tests read a real cache layout (``models--org--name/snapshots/<commit>/``, ``refs/main``) through
``huggingface_hub`` in a subprocess with ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from rae_framework.cli import main
from rae_framework.errors import ConfigError
from rae_framework.interop.diffusers_import import import_diffusers_run

diffusers = pytest.importorskip("diffusers")

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY = {"encoder_type": "dinov2", "encoder_hidden_size": 64, "encoder_patch_size": 14, "encoder_num_hidden_layers": 1,
        "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
        "decoder_intermediate_size": 64, "patch_size": 4, "encoder_input_size": 56}  # 64 x 4 x 4 latents, 16 px
STAGE2 = """\
name: imported-stage2
components:
  denoiser: {name: dit-dh, preset: dit-dh-tiny}
  schedule: {name: shifted-flow, params: {time_distribution: logit-normal}}
  sampler: {name: euler, preset: euler-tiny}
  encoder: {name: mae, preset: mae-tiny}
data: {source: digits, image_size: 16, holdout_fraction: 0.05}
stages:
  train_decoder: {steps: 5}
  latent_stats: {}
  train_denoiser: {steps: 2, batch_size: 8, log_every: 1, latent_cache: {enabled: false}}
"""


def tiny_autoencoder(seed: int = 0, **changes) -> diffusers.AutoencoderRAE:
    """A random tiny AutoencoderRAE with per-position latent statistics and a scaling factor."""
    torch.manual_seed(seed)
    stats = {"latents_mean": (torch.randn(64, 4, 4) * 0.1).tolist(),
             "latents_std": (torch.rand(64, 1, 1) + 0.5).tolist(), "scaling_factor": 0.7,
             "encoder_norm_mean": [0.5, 0.4, 0.3], "encoder_norm_std": [0.2, 0.3, 0.25]}
    model = diffusers.AutoencoderRAE(**{**TINY, **stats, **changes}).eval()
    with torch.no_grad():  # diffusers initialises the decoder's cls token and biases to zero: make them count
        for parameter in model.decoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model


@pytest.fixture
def pipeline_folder(tmp_path) -> Path:
    """A pipeline-style folder written by diffusers: ``model/vae/`` with config.json and the safetensors."""
    tiny_autoencoder().save_pretrained(tmp_path / "model" / "vae")
    return tmp_path / "model"


def assert_same_autoencoder(ours, theirs, size: int = 16) -> None:
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        latent = theirs.encode(images).latent  # (2, 64, 4, 4), normalised and scaled
        torch.testing.assert_close(ours.encode(images), latent, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.decode(latent), theirs.decode(latent).sample, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_round_trip_diffusers_import_then_stage2_run(pipeline_folder, tmp_path, capsys):
    """diffusers' folder -> `rae import` -> `rae run --stage train_denoiser`: stage 1 is the import (the
    assembly's own train_decoder/latent_stats are dropped) and the run's RAE is diffusers' to 1e-5."""
    import rae_framework

    (tmp_path / "stage2.yaml").write_text(STAGE2)
    run = tmp_path / "run"
    assert main(["import", str(pipeline_folder), "--out", str(run), "--assembly", str(tmp_path / "stage2.yaml")]) == 0
    assert f"rae run {run / 'imported.yaml'} --out {run}" in capsys.readouterr().out
    document = yaml.safe_load((run / "imported.yaml").read_text())
    assert list(document["stages"]) == ["train_denoiser"]
    assert document["components"]["encoder"]["name"] == "dinov2"  # the import's, not the assembly's mae
    assert document["autoencoder"]["statistics"] == str(run / "checkpoints" / "latent_stats.safetensors")
    assert main(["run", str(run / "imported.yaml"), "--out", str(run), "--stage", "train_denoiser"]) == 0
    assert "ran: train_denoiser" in capsys.readouterr().out
    assert (run / "checkpoints" / "denoiser_ema.safetensors").is_file()
    assert not (run / "stages" / "train_decoder").exists()
    theirs = diffusers.AutoencoderRAE.from_pretrained(pipeline_folder / "vae").eval()
    assert_same_autoencoder(rae_framework.load_run(run, device="cpu").rae, theirs)


def test_template_assembly_needs_only_the_data_root(pipeline_folder, tmp_path):
    """Without --assembly: the DiT^DH-S stage-2 template, sized by the imported latents; data.root is the user's."""
    with pytest.raises(ConfigError, match="data.root"):
        import_diffusers_run(str(pipeline_folder), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # validated before anything is written
    imported = import_diffusers_run(str(pipeline_folder), tmp_path / "run", overrides=["data.root=/data/train"])
    document = yaml.safe_load(imported.read_text())
    assert document["name"] == "model" and document["data"]["image_size"] == 16
    assert document["components"]["denoiser"]["params"]["in_channels"] == 64
    assert list(document["stages"]) == ["train_denoiser", "sample"]
    provenance = json.loads((tmp_path / "run" / "imported_from.json").read_text())
    assert provenance["folder"] == str(pipeline_folder / "vae") and provenance["config"]["scaling_factor"] == 0.7


def test_our_export_imports_back_with_sharded_weights(tmp_path):
    """Our RAE -> export_diffusers_vae -> re-saved by diffusers in shards -> `rae import` -> the same RAE."""
    import rae_framework
    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.engine.statistics import load_statistics
    from rae_framework.interop.diffusers_export import export_diffusers_vae
    from rae_framework.interop.official_rae import load_diffusers_rae

    source = tiny_autoencoder(seed=3)
    ours = load_diffusers_rae(dict(source.config), source.state_dict()).eval()
    ours.set_statistics(torch.randn(ours.latent_shape) * 0.1, torch.rand(ours.latent_shape) + 0.5)
    export_diffusers_vae(ours, tmp_path / "exported")
    diffusers.AutoencoderRAE.from_pretrained(tmp_path / "exported").save_pretrained(tmp_path / "sharded",
                                                                                   max_shard_size="40KB")
    assert (tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    imported = rae_framework.load_assembly(str(import_diffusers_run(
        str(tmp_path / "sharded"), tmp_path / "run", overrides=["data.root=/data/train"])))
    back = RepresentationAutoencoder(imported.build("encoder"), imported.build("decoder"), imported.autoencoder)
    back.set_statistics(*load_statistics(imported.autoencoder.statistics))
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(back.eval().encode(images), ours.encode(images), atol=1e-5, rtol=1e-5)
        latent = ours.encode(images)
        torch.testing.assert_close(back.decode(latent), ours.decode(latent), atol=1e-5, rtol=1e-5)


def test_a_mae_folder_imports_as_diffusers_computes(tmp_path):
    """The MAE encoder type (diffusers' ordered-token forward): our imported RAE encodes and decodes alike."""
    import rae_framework
    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.engine.statistics import load_statistics

    theirs = tiny_autoencoder(encoder_type="mae", encoder_patch_size=16, encoder_input_size=64)
    theirs.save_pretrained(tmp_path / "mae")
    imported = rae_framework.load_assembly(str(import_diffusers_run(str(tmp_path / "mae"), tmp_path / "run",
                                                                    overrides=["data.root=/x"])))
    ours = RepresentationAutoencoder(imported.build("encoder"), imported.build("decoder"), imported.autoencoder)
    ours.set_statistics(*load_statistics(imported.autoencoder.statistics))
    assert imported.components["encoder"].name == "mae"
    assert_same_autoencoder(ours.eval(), theirs)


@pytest.mark.parametrize("missing", ["config.json", "diffusion_pytorch_model.safetensors"])
def test_a_missing_file_is_named_with_its_folder(pipeline_folder, tmp_path, capsys, missing):
    (pipeline_folder / "vae" / missing).unlink()
    if missing == "config.json":  # without a config the vae/ subfolder is not recognised: name it
        arguments = [str(pipeline_folder), "--subfolder", "vae"]
    else:
        arguments = [str(pipeline_folder)]
    assert main(["import", *arguments, "--out", str(tmp_path / "run"), "--set", "data.root=/x"]) == 2
    err = capsys.readouterr().err
    assert f"{missing} is missing from folder {pipeline_folder / 'vae'}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_cut_weights_are_named_and_nothing_is_written(pipeline_folder, tmp_path, capsys):
    weights = pipeline_folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a download cut short
    assert main(["import", str(pipeline_folder), "--out", str(tmp_path / "run"), "--set", "data.root=/x"]) == 2
    err = capsys.readouterr().err
    assert f"weights file {weights}: not a readable safetensors file" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_unreadable_shard_index_is_named(pipeline_folder, tmp_path, capsys):
    vae = pipeline_folder / "vae"
    (vae / "diffusion_pytorch_model.safetensors").rename(vae / "diffusion_pytorch_model-00001-of-00001.safetensors")
    (vae / "diffusion_pytorch_model.safetensors.index.json").write_text("{not json")
    assert main(["import", str(pipeline_folder), "--out", str(tmp_path / "run"), "--set", "data.root=/x"]) == 2
    assert "diffusion_pytorch_model.safetensors.index.json: not a readable JSON file" in capsys.readouterr().err


def test_weights_that_do_not_fit_the_config_name_the_keys(pipeline_folder, tmp_path):
    weights = pipeline_folder / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["decoder.extra_head.weight"] = state.pop("decoder.decoder_norm.weight")
    save_file(state, str(weights))
    with pytest.raises(ConfigError, match=r"missing \['decoder.decoder_norm.weight'\]; "
                                          r"unexpected \['decoder.extra_head.weight'\]"):
        import_diffusers_run(str(pipeline_folder), tmp_path / "run", overrides=["data.root=/x"])


def test_a_config_field_we_cannot_express_is_named(pipeline_folder, tmp_path):
    config_path = pipeline_folder / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "encoder_dropout": 0.1}))
    with pytest.raises(ConfigError, match=r"field\(s\) \['encoder_dropout'\] cannot be expressed"):
        import_diffusers_run(str(pipeline_folder), tmp_path / "run", overrides=["data.root=/x"])
    config_path.write_text(json.dumps({**config, "encoder_type": "clip"}))
    with pytest.raises(ConfigError, match="encoder_type='clip'"):
        import_diffusers_run(str(pipeline_folder), tmp_path / "run", overrides=["data.root=/x"])
    config_path.write_text(json.dumps({**config, "reshape_to_2d": False}))
    with pytest.raises(ConfigError, match="reshape_to_2d"):
        import_diffusers_run(str(pipeline_folder), tmp_path / "run", overrides=["data.root=/x"])


def test_a_hub_id_absent_offline_names_the_repo(tmp_path, capsys):
    code = main(["import", "nobody-here/absent-rae", "--offline", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Hub repo nobody-here/absent-rae" in err and "offline" in err and "hf download" in err


def hub_cache(tmp_path: Path, model_folder: Path, repo: str = "org--tiny-rae") -> Path:
    """A Hugging Face hub cache holding ``model_folder`` as the repo's ``vae/`` at a commit that refs/main names:
    files in ``blobs/`` and links from ``snapshots/<commit>/``, as huggingface_hub writes them."""
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    for file in model_folder.iterdir():
        blob = root / "blobs" / f"blob-{file.name}"
        blob.parent.mkdir(exist_ok=True)
        shutil.copy(file, blob)
        link = root / "snapshots" / commit / "vae" / file.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return cache


def cli_calls(calls: list[list[str]], **env: str) -> subprocess.CompletedProcess:
    """``rae_framework.cli.main(ARGS)`` for each of ``calls`` in one fresh process (this checkout on the path, the
    given environment: huggingface_hub reads HF_HUB_CACHE when imported); prints the exit codes."""
    pythonpath = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])
    environment = {**os.environ, "PYTHONPATH": pythonpath, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    code = f"from rae_framework.cli import main\nprint([main(args) for args in {calls!r}])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)


@pytest.mark.slow
def test_import_by_hub_id_from_the_offline_cache(pipeline_folder, tmp_path):
    """A repo id resolved by huggingface_hub in HF_HUB_CACHE offline (its vae/ found without --subfolder); a file
    the cache lacks is named with the repo."""
    cache = hub_cache(tmp_path, pipeline_folder / "vae")
    hub_cache(tmp_path, pipeline_folder / "vae", repo="org--partial-rae")
    next(cache.glob("models--org--partial-rae/snapshots/*/vae/diffusion_pytorch_model.safetensors")).unlink()
    done = cli_calls([["import", "org/tiny-rae", "--out", str(tmp_path / "run"), "--set", "data.root=/data/train"],
                      ["import", "org/partial-rae", "--subfolder", "vae", "--out", str(tmp_path / "partial")]],
                     HF_HUB_CACHE=str(cache))
    assert done.stdout.strip().endswith("[0, 2]"), done.stderr[-3000:]
    theirs = diffusers.AutoencoderRAE.from_pretrained(pipeline_folder / "vae")
    imported = load_file(str(tmp_path / "run" / "checkpoints" / "encoder.safetensors"))
    for key, value in theirs.encoder.state_dict().items():
        assert torch.equal(imported[f"model.{key}"], value), key
    assert yaml.safe_load((tmp_path / "run" / "imported.yaml").read_text())["name"] == "tiny-rae"
    provenance = json.loads((tmp_path / "run" / "imported_from.json").read_text())
    assert provenance["commit"] == "0123456789abcdef0123456789abcdef01234567" and provenance["source"] == "org/tiny-rae"
    assert ("diffusion_pytorch_model.safetensors is missing from Hub repo org/partial-rae (subfolder vae, revision "
            "main)") in done.stderr and "hf download org/partial-rae --include 'vae/*'" in done.stderr
