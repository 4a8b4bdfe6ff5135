"""``load_run`` and ``rae sample`` on a tiny run directory (real tiny presets, weights written directly)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

import rae_framework
from rae_framework import cli
from rae_framework.engine import DistContext, RunState, module_tensors
from rae_framework.engine.run_state import StageRecord
from rae_framework.errors import ConfigError

ASSEMBLY = """
name: pipeline-tiny
seed: 0
components:
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny}
  denoiser: {name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2}}
  schedule: {name: shifted-flow}
  sampler: {name: euler, preset: euler-tiny}
  guidance: {name: cfg, params: {scale: 3.0}}
data: {source: digits, image_size: 16}
stages:
  train_decoder: {steps: 1}
  latent_stats: {}
  train_denoiser: {steps: 1}
  sample: {per_class: 1}
"""


def _perturbed(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's tensors plus seeded noise: weights no fresh build has."""
    generator = torch.Generator().manual_seed(seed)
    return {key: value + 0.05 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
            for key, value in module_tensors(module).items()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory as the engine leaves it: resolved assembly, EMA weights, latent statistics."""
    folder = tmp_path_factory.mktemp("pipeline")
    (folder / "tiny.yaml").write_text(ASSEMBLY)
    assembly = rae_framework.load_assembly(str(folder / "tiny.yaml"))
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "assembly.yaml").write_text(assembly.to_yaml())
    state = RunState(run, assembly, DistContext())
    save_file(_perturbed(state.component("decoder"), 1), str(run / "checkpoints" / "decoder_ema.safetensors"))
    save_file(_perturbed(state.component("denoiser"), 2), str(run / "checkpoints" / "denoiser_ema.safetensors"))
    generator = torch.Generator().manual_seed(3)
    shape = assembly.latent_shape
    save_file({"mean": torch.randn(shape, generator=generator), "var": torch.rand(shape, generator=generator) + 0.5},
              str(run / "checkpoints" / "latent_stats.safetensors"))
    for stage, output in (("train_decoder", "decoder_ema"), ("train_denoiser", "denoiser_ema"),
                          ("latent_stats", "latent_stats")):  # the records of the stages that wrote them
        state.write_record(StageRecord.create(stage, "written-by-the-fixture", [state.output_path(output)], run))
    return run


@pytest.fixture(scope="module")
def pipe(run_dir):
    return rae_framework.load_run(run_dir, device="cpu")


def test_load_run_uses_the_runs_ema_weights_and_statistics(pipe, run_dir):
    checkpoints = run_dir / "checkpoints"
    for module, name in ((pipe.denoiser, "denoiser_ema"), (pipe.rae.decoder, "decoder_ema")):
        saved = load_file(str(checkpoints / f"{name}.safetensors"))
        for key, value in module.state_dict().items():
            assert torch.equal(value, saved[key]), (name, key)
    statistics = load_file(str(checkpoints / "latent_stats.safetensors"))
    assert torch.equal(pipe.rae.latent_mean, statistics["mean"]) and torch.equal(pipe.rae.latent_var, statistics["var"])
    assert not pipe.denoiser.training and not pipe.rae.training


def test_repr_names_components_weights_latents_and_classes(pipe, run_dir):
    text = repr(pipe)
    for expected in (f"run='{run_dir}'", "random weights (pretrained: false)", "vit", "dit-dh", "M params",
                     "checkpoints/denoiser_ema.safetensors (train_denoiser, EMA)",
                     "checkpoints/decoder_ema.safetensors (train_decoder, EMA)",
                     "checkpoints/latent_stats.safetensors (latent_stats)", "euler          num_steps=4",
                     "cfg            scale=3.0", "32x2x2", "10 classes: 0, 1, 2, 3, 4, ..."):
        assert expected in text, (expected, text)


def test_call_gives_pil_images_in_class_major_order(pipe):
    output = pipe([3, "7"], num_images_per_label=2, seed=0, progress_bar=False)
    assert output.labels == [3, 3, 7, 7]
    assert len(output.images) == 4 and all(isinstance(image, Image.Image) for image in output.images)
    assert output.images[0].size == (16, 16) and output.images[0].mode == "RGB"
    with pytest.raises(ConfigError, match="must be positive"):
        pipe(3, num_images_per_label=0)
    with pytest.raises(ConfigError, match="output_type 'pix': expected one of pil, np, pt, latent"):
        pipe(3, output_type="pix")


def test_seed_and_generator_reproduce_and_output_types_agree(pipe):
    first = pipe([1, 2], seed=5, output_type="np", progress_bar=False).images
    again = pipe([1, 2], generator=torch.Generator().manual_seed(5), output_type="np", progress_bar=False).images
    other = pipe([1, 2], seed=6, output_type="np", progress_bar=False).images
    assert first.dtype == np.uint8 and first.shape == (2, 16, 16, 3)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    tensor = pipe([1, 2], seed=5, output_type="pt", progress_bar=False).images  # (2, 3, 16, 16) in [0, 1]
    assert tensor.shape == (2, 3, 16, 16) and 0.0 <= tensor.min() and tensor.max() <= 1.0
    assert np.array_equal((tensor * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(), first)  # truncated, as ADM
    latents = pipe([1, 2], seed=5, output_type="latent", progress_bar=False).images
    assert latents.shape == (2, *pipe.latent_shape)
    assert torch.equal(pipe.decode(latents), tensor)


def test_batches_draw_from_one_generator_stream(pipe):
    whole = pipe([0, 1, 2], seed=1, output_type="np", progress_bar=False).images
    split = pipe([0, 1, 2], seed=1, output_type="np", batch_size=2, progress_bar=False).images
    assert np.array_equal(whole[:2], split[:2])  # the first batch's noise is the same draw


def test_guidance_and_steps_can_be_changed_per_call(pipe):
    def images(**options):
        return pipe([4, 5], seed=0, output_type="np", progress_bar=False, **options).images

    run_settings = images()
    assert np.array_equal(images(guidance_scale=3.0, num_steps=4), run_settings)  # the run's own values
    unguided = images(guidance="none")
    assert np.array_equal(images(guidance_scale=1.0), unguided)  # scale 1 = no extra pass
    assert not np.array_equal(unguided, run_settings)
    assert not np.array_equal(images(num_steps=6), run_settings)
    assert not np.array_equal(images(sampler="heun"), run_settings)
    with pytest.raises(ConfigError, match="without guidance"):
        images(guidance="none", guidance_scale=2.0)
    with pytest.raises(ConfigError, match="components.guide"):
        images(guidance="autoguidance")


def test_encode_accepts_tensors_and_pil_and_decode_returns_images(pipe):
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    latents = pipe.encode(pixels)
    assert latents.shape == (2, *pipe.latent_shape)
    as_pil = [Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()) for image in pixels]
    quantised = torch.stack([torch.from_numpy(np.asarray(i, np.float32) / 255).permute(2, 0, 1) for i in as_pil])
    torch.testing.assert_close(pipe.encode(as_pil), pipe.encode(quantised))
    torch.testing.assert_close(pipe.encode(as_pil[0]), pipe.encode(quantised[:1]))
    decoded = pipe.decode(latents)
    assert decoded.shape == (2, 3, 16, 16) and 0.0 <= decoded.min() and decoded.max() <= 1.0


def test_labels_by_name_from_classes_json_and_clear_label_errors(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    names = ["tench", "goldfish", "shark", "tiger", "hen", "ostrich", "finch", "robin", "jay", "magpie"]
    (run / "classes.json").write_text(json.dumps(names))
    pipe = rae_framework.load_run(run, device="cpu")
    assert pipe.get_label_ids(["goldfish", 3, "tench"]) == [1, 3, 0]
    assert pipe.get_label_ids(torch.tensor([[2, 4]])) == [2, 4]
    with pytest.raises(ConfigError, match="unknown class name 'golfish'. Did you mean 'goldfish'?"):
        pipe.get_label_ids("golfish")
    with pytest.raises(ConfigError, match="class labels are 0 .. 9"):
        pipe.get_label_ids([10])
    (run / "classes.json").write_text('{"not": "a list"}')
    with pytest.raises(ConfigError, match="classes.json: expected a JSON list"):
        rae_framework.load_run(run, device="cpu")


def _without(run_dir: Path, tmp_path: Path, name: str) -> Path:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / name).unlink()
    return run


@pytest.mark.parametrize(("missing", "stage"), [("checkpoints/denoiser_ema.safetensors", "train_denoiser"),
                                                ("checkpoints/decoder_ema.safetensors", "train_decoder"),
                                                ("checkpoints/latent_stats.safetensors", "latent_stats")])
def test_missing_weights_name_the_file_and_the_stage(run_dir, tmp_path, missing, stage):
    run = _without(run_dir, tmp_path, missing)
    with pytest.raises(ConfigError, match=f"{missing}: missing; the run's {stage} stage writes it"):
        rae_framework.load_run(run, device="cpu")


def _damaged(run_dir: Path, tmp_path: Path, name: str, how: str) -> Path:
    """A copy of the run whose output ``name`` has one byte flipped (the header still parses: only a checksum
    tells) or is cut to half its size."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    data = bytearray((run / name).read_bytes())
    if how == "flipped":
        data[-5] ^= 0x10
    else:
        del data[len(data) // 2:]
    (run / name).write_bytes(bytes(data))
    return run


@pytest.mark.parametrize("how", ["flipped", "cut"])
@pytest.mark.parametrize(("damaged", "stage"), [("checkpoints/denoiser_ema.safetensors", "train_denoiser"),
                                                ("checkpoints/decoder_ema.safetensors", "train_decoder"),
                                                ("checkpoints/latent_stats.safetensors", "latent_stats")])
def test_damaged_weights_are_refused_naming_the_file_and_the_stage(run_dir, tmp_path, damaged, stage, how):
    run = _damaged(run_dir, tmp_path, damaged, how)
    with pytest.raises(ConfigError, match=f"{damaged}: damaged or changed since the {stage} stage wrote it"):
        rae_framework.load_run(run, device="cpu")


def test_an_untrained_component_without_checkpoint_is_an_error(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    data = yaml.safe_load((run / "assembly.yaml").read_text())
    data["stages"]["train_denoiser"]["enabled"] = False
    (run / "assembly.yaml").write_text(yaml.safe_dump(data))
    expected = "no stage of this run writes 'denoiser_ema' and components.denoiser.checkpoint is not set"
    with pytest.raises(ConfigError, match=expected):
        rae_framework.load_run(run, device="cpu")


def test_a_stage_1_run_encodes_and_decodes_and_refuses_to_sample(run_dir, tmp_path, pipe):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "checkpoints" / "denoiser_ema.safetensors").unlink()
    data = yaml.safe_load((run / "assembly.yaml").read_text())
    for role in ("denoiser", "schedule", "sampler", "guidance"):
        del data["components"][role]
    del data["stages"]["train_denoiser"], data["stages"]["sample"]
    (run / "assembly.yaml").write_text(yaml.safe_dump(data))
    stage1 = rae_framework.load_run(run, device="cpu")
    assert "dit-dh" not in repr(stage1) and "10 classes" in repr(stage1)
    pixels = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(stage1.decode(stage1.encode(pixels)), pipe.decode(pipe.encode(pixels)))
    with pytest.raises(ConfigError, match="this run has no denoiser"):
        stage1(3)


def test_a_folder_of_imported_weights_loads_through_its_imported_yaml(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "assembly.yaml").rename(run / "imported.yaml")  # what 'rae import-official' leaves before 'rae run'
    assert rae_framework.load_run(run, device="cpu").assembly.source == str(run / "imported.yaml")


def test_missing_run_dir_or_assembly(tmp_path):
    with pytest.raises(ConfigError, match="no such run directory"):
        rae_framework.load_run(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="assembly.yaml: missing"):
        rae_framework.load_run(tmp_path)


# --- rae sample ------------------------------------------------------------------------------------------


def test_cli_writes_grid_and_adm_npz(run_dir, tmp_path, capsys):
    grid, npz = tmp_path / "out" / "grid.png", tmp_path / "out" / "samples.npz"
    code = cli.main(["sample", str(run_dir), "--labels", "3,7", "--per-label", "2", "--steps", "3",
                     "--out", str(grid), "--npz", str(npz)])
    assert code == 0, capsys.readouterr().err
    with np.load(npz) as samples:
        assert sorted(samples.files) == ["arr_0", "arr_1"]
        assert samples["arr_0"].dtype == np.uint8 and samples["arr_0"].shape == (4, 16, 16, 3)
        assert samples["arr_1"].dtype == np.int64 and samples["arr_1"].tolist() == [3, 3, 7, 7]
        images = samples["arr_0"]
    with Image.open(grid) as picture:
        assert picture.size == (2 * 16, 2 * 16)  # one row per label, --per-label columns
        assert np.array_equal(np.asarray(picture)[16:, :16], images[2])
    assert str(grid) in capsys.readouterr().out


def test_cli_matches_the_python_pipeline(run_dir, pipe, tmp_path):
    npz = tmp_path / "s.npz"
    assert cli.main(["sample", str(run_dir), "--labels", "5", "--per-label", "3", "--seed", "4", "--guidance", "cfg",
                     "--scale", "1.5", "--sampler", "heun", "--steps", "3", "--npz", str(npz)]) == 0
    expected = pipe(5, num_images_per_label=3, seed=4, guidance_scale=1.5, sampler="heun", num_steps=3,
                    output_type="np", progress_bar=False).images
    with np.load(npz) as samples:
        assert np.array_equal(samples["arr_0"], expected)


def test_cli_labels_by_name(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "classes.json").write_text(json.dumps([f"class-{i}" for i in range(10)]))
    npz = tmp_path / "s.npz"
    assert cli.main(["sample", str(run), "--labels", "class-9,2", "--per-label", "1", "--npz", str(npz)]) == 0
    with np.load(npz) as samples:
        assert samples["arr_1"].tolist() == [9, 2]


@pytest.mark.parametrize(("arguments", "message"), [
    (["--labels", "3", "--out", "g.png"], "no such run directory"),
    (["--labels", "thre", "--out", "g.png"], "unknown class name 'thre'"),
    (["--labels", "12", "--out", "g.png"], "class labels are 0 .. 9"),
    (["--labels", "3,,4", "--out", "g.png"], "--labels: empty label"),
    (["--labels", "3"], "--out FILE"),
    (["--labels", "3", "--out", "g.png", "--guidance", "nope"], "Unknown guidance 'nope'"),
    (["--labels", "3", "--out", "g.png", "--device", "gpu0"], "device 'gpu0'"),
])
def test_cli_invalid_input_exits_2_without_traceback(run_dir, tmp_path, capsys, arguments, message):
    target = tmp_path / "nowhere" if message == "no such run directory" else run_dir
    code = cli.main(["sample", str(target), *[a.replace("g.png", str(tmp_path / "g.png")) for a in arguments]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "g.png").exists()


def test_cli_missing_weights_exit_2_naming_file_and_stage(run_dir, tmp_path, capsys):
    run = _without(run_dir, tmp_path, "checkpoints/denoiser_ema.safetensors")
    assert cli.main(["sample", str(run), "--labels", "1", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "denoiser_ema.safetensors: missing; the run's train_denoiser stage writes it" in err


def test_cli_damaged_weights_exit_2_naming_file_and_stage(run_dir, tmp_path, capsys):
    run = _damaged(run_dir, tmp_path, "checkpoints/denoiser_ema.safetensors", "flipped")
    assert cli.main(["sample", str(run), "--labels", "1", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "denoiser_ema.safetensors: damaged or changed since the train_denoiser stage wrote it" in err
    assert "Traceback" not in err and not (tmp_path / "g.png").exists()


def test_load_run_and_sample_help_do_not_import_torch():
    code = ("import sys, rae_framework\nfn = rae_framework.load_run\n"
            "from rae_framework import cli\n"
            "try:\n    cli.main(['sample', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH-IMPORTED' if 'torch' in sys.modules else 'TORCH-FREE')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "RUN_DIR" in result.stdout and result.stdout.strip().endswith("TORCH-FREE"), result.stdout
