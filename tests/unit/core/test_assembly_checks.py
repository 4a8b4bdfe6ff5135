"""``validate`` catches what a run would hit: each check of rae_framework.assembly_checks (real plugins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rae_framework import Session
from rae_framework.assembly import load_assembly
from rae_framework.assembly_checks import looks_like_path
from rae_framework.errors import AssemblyError

REPOSITORY = Path(__file__).resolve().parents[3]
SESSION = Session()
ENCODER = REPOSITORY / "examples" / "quickstart" / "encoder"

BASE = f"""\
name: checks
components:
  encoder:
    name: mae
    params:
      weights: {ENCODER}
      input_size: 32
      overrides: {{hidden_size: 64, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 128,
                  patch_size: 8, image_size: 32}}
  decoder:
    name: vit
    params: {{hidden_size: 128, num_layers: 4, num_heads: 4, intermediate_size: 256, patch_size: 8}}
  denoiser:
    name: dit-dh
    params: {{hidden_size: [128, 192], depth: [4, 1], num_heads: [4, 4], num_classes: 10}}
  schedule: {{name: shifted-flow}}
  sampler: {{name: euler, params: {{num_steps: 20}}}}
  guidance: {{name: cfg, params: {{scale: 3.0}}}}
data: {{source: digits, image_size: 32}}
stages:
  train_denoiser: {{steps: 10}}
"""


def load(tmp_path, text=BASE, overrides=()):
    path = tmp_path / "a.yaml"
    path.write_text(text)
    return load_assembly(path, list(overrides), session=SESSION)


def issues(tmp_path, text=BASE, overrides=()):
    with pytest.raises(AssemblyError) as caught:
        load(tmp_path, text, overrides)
    return {issue.path: issue for issue in caught.value.issues}


def test_the_base_is_valid_and_quiet(tmp_path):
    assert load(tmp_path).warnings == ()


def test_autoguidance_needs_a_guide_role(tmp_path):
    found = issues(tmp_path, BASE.replace("name: cfg, params: {scale: 3.0}", "name: autoguidance"))
    assert "needs a guide denoiser: add a role 'guide'" in found["components.guidance"].message
    assert found["components.guidance"].location.endswith("a.yaml:18")


def test_label_dropout_and_cfg_need_the_null_class_row(tmp_path):
    found = issues(tmp_path, overrides=["components.denoiser.params.class_dropout_prob=0"])
    assert "no null-class row" in found["stages.train_denoiser.class_dropout"].message
    assert "evaluates the null (unconditional) label" in found["components.guidance"].message
    load(tmp_path, overrides=["components.denoiser.params.class_dropout_prob=0",
                              "stages.train_denoiser.class_dropout=0",
                              "components.guidance.params.scale=1"])  # nothing drops or guides: fine


def test_decoder_output_must_be_the_data_image_size(tmp_path):
    assert load(tmp_path, overrides=["data.image_size=64"])  # only training the denoiser: no reconstructions
    found = issues(tmp_path, overrides=["data.image_size=64", "stages.evaluate.metrics=[psnr]"])
    issue = found["components.decoder.params.patch_size"]
    assert "outputs 32 px images (4 tokens per side x patch_size 8) but data.image_size is 64" in issue.message
    assert "patch_size 16 would give 64" in issue.message


def test_num_classes_must_match_the_data_the_denoiser_learns(tmp_path):
    untrained = ["components.denoiser.params.num_classes=1000", "stages.train_denoiser.enabled=false"]
    assert load(tmp_path, overrides=untrained)  # a denoiser trained elsewhere keeps its classes
    found = issues(tmp_path, overrides=["components.denoiser.params.num_classes=1000"])
    assert found["components.denoiser.params.num_classes"].message == "the digits has 10 classes; set num_classes: 10"
    root = tmp_path / "images"
    for name in ("cat", "dog", "owl"):
        (root / name).mkdir(parents=True)
    found = issues(tmp_path, overrides=["data.source=folder", f"data.root={root}"])
    assert "has 3 classes; set num_classes: 3" in found["components.denoiser.params.num_classes"].message


def test_folder_data_needs_a_root_and_missing_paths_are_warned(tmp_path):
    assert "needs root" in issues(tmp_path, overrides=["data.source=folder"])["data.root"].message
    missing = tmp_path / "nowhere"
    assembly = load(tmp_path, overrides=["data.source=folder", f"data.root={missing}",
                                         f"components.decoder.checkpoint={missing}/decoder.safetensors",
                                         f"autoencoder.statistics={missing}/stats.safetensors"])
    warnings = "\n".join(assembly.warnings)
    assert f"data.root: {missing} is not a folder (yet)" in warnings
    assert f"components.decoder.checkpoint: {missing}/decoder.safetensors does not exist (yet)" in warnings
    assert "autoencoder.statistics" in warnings


def test_a_misspelled_local_weights_path_is_not_taken_for_a_hub_id(tmp_path):
    text = BASE.replace(f"weights: {ENCODER}", "weights: examples/quickstart/encodr")
    (warning,) = load(tmp_path, text).warnings
    assert warning.startswith(f"{tmp_path / 'a.yaml'}:6: components.encoder.params.weights: examples/quickstart/"
                              "encodr does not exist; it looks like a local path")
    assert load(tmp_path, BASE.replace(f"weights: {ENCODER}", "weights: facebook/vit-mae-base")).warnings == ()


@pytest.mark.parametrize("source, path", [("facebook/dinov2-base", False), ("./model", True), ("~/w", True),
                                          ("/abs/w", True), ("a/b/c", True), ("model.safetensors", True),
                                          ("timm/vit_base_patch14_reg4_dinov2.lvd142m", False)])
def test_looks_like_path(source, path):
    assert looks_like_path(source) is path


def test_input_size_not_divisible_by_the_patch_points_at_the_override(tmp_path):
    override = "components.denoiser.params.patch_size=3"
    issue = issues(tmp_path, overrides=[override])["components.denoiser.params"]
    assert issue.location == f"--set {override}"
    assert "input_size 4 is not divisible by patch_size 3" in issue.message and "got" not in str(issue)
    text = BASE.replace("num_classes: 10}", "num_classes: 10, patch_size: 3}")
    issue = issues(tmp_path, text)["components.denoiser.params"]
    assert issue.location.endswith("a.yaml:15")  # the params line


def test_misspelled_keys_get_a_suggestion(tmp_path):
    text = BASE.replace("steps: 10", "stpes: 10").replace("num_layers: 4", "num_layer: 4").replace(
        "components:", "components:\n  sampler2: {kind: sampler, nme: euler}")
    found = issues(tmp_path, text)
    assert found["stages.train_denoiser.stpes"].message == ("Extra inputs are not permitted. "
                                                            "Did you mean 'steps'?")
    assert "Did you mean 'num_layers'?" in found["components.decoder.params.num_layer"].message
    assert "Did you mean 'name'?" in found["components.sampler2.nme"].message
    misspelled = issues(tmp_path, BASE.replace("components:", "componets:"))
    assert "Did you mean 'components'?" in misspelled["componets"].message


def test_a_presets_latent_values_yield_to_the_encoder(tmp_path):
    text = BASE.replace("name: dit-dh\n", "name: dit-dh\n    preset: dit-dh-xl\n")
    assembly = load(tmp_path, text)  # dit-dh-xl was written for DINOv2-B: 768 channels, 16 x 16
    params = assembly.components["denoiser"].params
    assert (params["in_channels"], params["input_size"]) == (64, 4)
    found = issues(tmp_path, overrides=["components.denoiser.params.in_channels=768"])
    assert "contradicts the encoder's latent shape" in found["components.denoiser.params.in_channels"].message


@pytest.mark.parametrize("override, path", [
    ("autoencoder.noise_tau=.inf", "autoencoder.noise_tau"),  # passed every ge/le bound and ran to the end
    ("components.guidance.params.scale=.inf", "components.guidance.params.scale"),
    ("stages.train_denoiser.optimizer.lr=.nan", "stages.train_denoiser.optimizer.lr"),
])
def test_a_nan_or_an_infinity_is_no_number_a_run_can_use(tmp_path, override, path):
    found = issues(tmp_path, overrides=[override])
    assert path in found and "finite number" in found[path].message


def test_the_seed_is_a_non_negative_integer_of_any_size(tmp_path):
    assert "seed" in issues(tmp_path, overrides=["seed=-5"])  # a negative seed failed deep in the first stage
    assert load(tmp_path, overrides=["seed=1180591620717411303424"]).seed == 2**70
