"""`import-official`: the reference's checkpoint files -> a run directory whose assembly samples with them.

The files are written in the reference's layouts (fixture README, checkpoint_layouts.json): the decoder as a
flat GeneralDecoder state dict (HF ViT names, separate q/k/v) or a stage-1 checkpoint's ``ema`` RAE dict,
``stat.pt`` with ``var`` only (as the released DINOv2-B file), the DiT as a training checkpoint
``{"model", "ema", ...}`` whose ``ema`` is the one to import (reference src/utils/model_utils.py:24-25).
"""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

import rae_framework
from rae_framework.cli import main
from rae_framework.interop.import_run import OfficialFiles, import_official_run

ASSEMBLY = """\
name: import-tiny
components:
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny, checkpoint: runs/never-trained/decoder_ema.safetensors}
  denoiser: {name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2}}
  guide: {kind: denoiser, name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2}}
  schedule: {name: shifted-flow, preset: shifted-flow-tiny, params: {latent_shape: null}}
  sampler: {name: euler, preset: euler-tiny}
  guidance: {name: autoguidance, preset: autoguidance-tiny}
data: {source: digits, image_size: 32}
stages:
  sample: {per_class: 1, batch_size: 10}
"""


def _reference_decoder_keys(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ``vit`` decoder state dict in the reference GeneralDecoder naming (q/k/v split, HF ViT names)."""
    renames = {"pos_embed": "decoder_pos_embed", "cls_token": "trainable_cls_token", "embed.": "decoder_embed.",
               "norm.": "decoder_norm.", "head.": "decoder_pred."}
    layer_names = {"attn.proj.": "attention.output.dense.", "fc1.": "intermediate.dense.",
                   "fc2.": "output.dense.", "norm1.": "layernorm_before.", "norm2.": "layernorm_after."}
    converted = {}
    for key, value in ours.items():
        if key.startswith("blocks."):
            _, layer, rest = key.split(".", 2)
            if rest.startswith("attn.qkv."):
                for name, part in zip(("query", "key", "value"), value.chunk(3)):
                    converted[f"decoder_layers.{layer}.attention.attention.{name}.{rest.rsplit('.', 1)[1]}"] = part
                continue
            prefix = next(p for p in layer_names if rest.startswith(p))
            converted[f"decoder_layers.{layer}.{layer_names[prefix]}{rest[len(prefix):]}"] = value
        else:
            prefix = next(p for p in renames if key.startswith(p))
            converted[renames[prefix] + key[len(prefix):]] = value
    return converted


def _randomized(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(value.shape, generator=generator) for key, value in module.state_dict().items()}


@pytest.fixture
def reference_files(tmp_path):
    """Tiny random weights saved in the reference's file layouts, and the weights each should import as."""
    assembly_path = tmp_path / "assembly.yaml"
    assembly_path.write_text(ASSEMBLY)
    assembly = rae_framework.load_assembly(str(assembly_path), ["components.decoder.checkpoint=null"])
    decoder = _randomized(assembly.build("decoder"), 0)
    denoiser, guide = (_randomized(assembly.build(role), seed) for role, seed in (("denoiser", 1), ("guide", 2)))
    rae_checkpoint = {"ema": {**{f"decoder.{k}": v for k, v in _reference_decoder_keys(decoder).items()},
                              "encoder.encoder.embeddings.cls_token": torch.zeros(1, 1, 32)}, "step": 3}
    torch.save(rae_checkpoint, tmp_path / "stage1.pt")
    torch.save({"model": guide, "ema": denoiser, "optimizer": {}, "step": 5}, tmp_path / "denoiser.pt")
    torch.save({f"module.{k}": v for k, v in guide.items()}, tmp_path / "guide.pt")  # a DDP-wrapped flat dict
    torch.save({"var": torch.rand(32, 2, 2) + 0.5}, tmp_path / "stat.pt")
    torch.save(_reference_decoder_keys(decoder), tmp_path / "model.pt")
    return assembly_path, {"decoder": decoder, "denoiser": denoiser, "guide": guide}


@pytest.mark.parametrize("decoder_file", ["model.pt", "stage1.pt"])
def test_import_writes_our_checkpoints_and_an_assembly_that_loads_them(reference_files, tmp_path, decoder_file):
    assembly_path, expected = reference_files
    files = OfficialFiles(decoder=tmp_path / decoder_file, stats=tmp_path / "stat.pt",
                          denoiser=tmp_path / "denoiser.pt", guide=tmp_path / "guide.pt")
    imported = import_official_run(assembly_path, files, tmp_path / "run")
    for role, weights in expected.items():
        saved = load_file(str(tmp_path / "run" / "checkpoints" / f"{role}_ema.safetensors"))
        built = rae_framework.load_assembly(str(imported)).build(role).state_dict()
        for key in weights:
            assert torch.equal(saved[key], weights[key]) and torch.equal(built[key], weights[key]), (role, key)
    stats = load_file(str(tmp_path / "run" / "checkpoints" / "latent_stats.safetensors"))
    assert set(stats) == {"var"} and torch.equal(stats["var"], torch.load(tmp_path / "stat.pt", weights_only=True)["var"])
    document = yaml.safe_load(imported.read_text())
    assert document["autoencoder"]["statistics"].endswith("latent_stats.safetensors")


def test_cli_imports_and_reports_a_file_that_does_not_fit(reference_files, tmp_path, capsys):
    assembly_path, _ = reference_files
    out = tmp_path / "run"
    assert main(["import-official", str(assembly_path), "--out", str(out), "--denoiser",
                 str(tmp_path / "denoiser.pt")]) == 0
    assert (out / "checkpoints" / "denoiser_ema.safetensors").is_file() and (out / "imported.yaml").is_file()
    assert "rae run" in capsys.readouterr().out
    code = main(["import-official", str(assembly_path), "--out", str(out), "--denoiser", str(tmp_path / "model.pt")])
    assert code == 2 and "missing" in capsys.readouterr().err
    assert main(["import-official", str(assembly_path), "--out", str(out)]) == 2


@pytest.mark.parametrize("option", ["--decoder", "--stats", "--denoiser", "--guide"])
@pytest.mark.parametrize("content, expected", [
    (b"\xff" * 64, "not a readable PyTorch file"),  # neither a zip nor a legacy pickle
    (b"name: not-a-checkpoint\n", "not a readable PyTorch file"),  # the assembly passed by mistake
    (None, "not found"),
])
def test_an_unreadable_reference_file_is_exit_2_naming_it(reference_files, tmp_path, capsys, option, content,
                                                          expected):
    assembly_path, _ = reference_files
    bad = tmp_path / "bad.pt"
    if content is not None:
        bad.write_bytes(content)
    out = tmp_path / "run"
    assert main(["import-official", str(assembly_path), "--out", str(out), option, str(bad)]) == 2
    error = capsys.readouterr().err
    assert str(bad) in error and expected in error and "Traceback" not in error
    assert not out.exists()  # refused before the run directory is made


def test_a_bad_file_among_good_ones_writes_nothing(reference_files, tmp_path):
    assembly_path, _ = reference_files
    (tmp_path / "bad.pt").write_bytes(b"\xff" * 64)
    out = tmp_path / "run"
    assert main(["import-official", str(assembly_path), "--out", str(out), "--decoder", str(tmp_path / "model.pt"),
                 "--stats", str(tmp_path / "stat.pt"), "--denoiser", str(tmp_path / "denoiser.pt"),
                 "--guide", str(tmp_path / "bad.pt")]) == 2
    assert not out.exists()


def test_a_damaged_safetensors_statistics_file_names_itself(reference_files, tmp_path, capsys):
    assembly_path, _ = reference_files
    bad = tmp_path / "stats.safetensors"
    bad.write_bytes(b"\x00" * 7 + b"\xff" * 9)  # a header length far past the file's end
    assert main(["import-official", str(assembly_path), "--out", str(tmp_path / "run"), "--stats", str(bad)]) == 2
    error = capsys.readouterr().err
    assert f"latent statistics file {bad}: not a readable safetensors file" in error


def test_a_tensor_file_that_holds_no_dict(tmp_path, capsys, reference_files):
    assembly_path, _ = reference_files
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert main(["import-official", str(assembly_path), "--out", str(tmp_path / "run"), "--denoiser",
                 str(tmp_path / "tensor.pt")]) == 2
    assert "expected a dict of tensors, got Tensor" in capsys.readouterr().err
