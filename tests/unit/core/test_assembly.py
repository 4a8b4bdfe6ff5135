"""The assembly loader: two-stage validation, presets, overrides, derived values, all errors with file:line."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from core_fakes import STAGES_PLUGIN, FakeComponent, FakePlugin
from rae_framework import Session
from rae_framework.assembly import load_assembly
from rae_framework.errors import AssemblyError

PRESETS = """\
kind: decoder
presets:
  fake-wide: {component: fake-decoder, params: {hidden_size: 64}, summary: wide}
  fake-bad-dim: {component: fake-decoder, params: {token_dim: 5}, summary: contradicts the encoder}
"""

GOOD = """\
name: unit-run
seed: 3
components:
  encoder: {name: fake-encoder, params: {width: 12, input_size: 32, patch_size: 8}}
  decoder: {name: fake-decoder, preset: fake-wide}
  denoiser: {name: fake-denoiser, params: {hidden_size: 48}}
  guide: {kind: denoiser, name: fake-denoiser, params: {hidden_size: 16}}
  schedule: {name: fake-schedule}
  sampler: {name: fake-sampler, params: {num_steps: 4}}
stages:
  train_decoder: {steps: 3, batch_size: 2}
  latent_stats: {}
  train_denoiser: {steps: 2}
  sample: {per_class: 1}
  evaluate: {metrics: [fake-metric]}
"""


@pytest.fixture
def session(tmp_path):
    presets = tmp_path / "fake_presets.yaml"
    presets.write_text(PRESETS)
    return Session(entry_points=False, plugins=[("fakes", FakePlugin([str(presets)])), STAGES_PLUGIN])


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path, session, overrides=()):
    with pytest.raises(AssemblyError) as caught:
        load_assembly(path, list(overrides), session=session)
    return caught.value


def test_valid_assembly_resolves_presets_and_derived_values(tmp_path, session):
    assembly = load_assembly(write(tmp_path, GOOD), session=session)
    assert assembly.name == "unit-run" and assembly.seed == 3
    assert assembly.latent_shape == (12, 4, 4)
    assert assembly.components["decoder"].params == {"token_dim": 12, "hidden_size": 64}
    assert assembly.components["denoiser"].params["in_channels"] == 12
    assert assembly.components["guide"].kind == "denoiser"
    assert assembly.components["guide"].params["input_size"] == 4
    assert assembly.components["schedule"].config.latent_shape == (12, 4, 4)
    assert assembly.stages.train_decoder.steps == 3 and assembly.stages.evaluate.metrics == ["fake-metric"]


def test_to_yaml_round_trips_to_the_same_assembly(tmp_path, session):
    assembly = load_assembly(write(tmp_path, GOOD), session=session)
    again = load_assembly(write(tmp_path, assembly.to_yaml(), "resolved.yaml"), session=session)
    assert again.resolved() == assembly.resolved()
    assert yaml.safe_load(assembly.to_yaml())["components"]["schedule"]["params"]["latent_shape"] == [12, 4, 4]


def test_build_uses_the_validated_config(tmp_path, session):
    assembly = load_assembly(write(tmp_path, GOOD), session=session)
    sampler = assembly.build("sampler")
    assert isinstance(sampler, FakeComponent) and sampler.config.num_steps == 4
    with pytest.raises(Exception, match="no component 'nope'"):
        assembly.build("nope")


def test_assembly_is_frozen(tmp_path, session):
    assembly = load_assembly(write(tmp_path, GOOD), session=session)
    with pytest.raises(Exception):
        assembly.seed = 4


def test_overrides_are_yaml_typed_and_dotted(tmp_path, session):
    path = write(tmp_path, GOOD)
    assembly = load_assembly(path, ["stages.train_denoiser.steps=5", "components.sampler.params.num_steps=7",
                                    "stages.evaluate.metrics=[fake-metric, fake-metric]", "seed=11"],
                             session=session)
    assert assembly.stages.train_denoiser.steps == 5
    assert assembly.components["sampler"].params["num_steps"] == 7
    assert assembly.seed == 11 and len(assembly.stages.evaluate.metrics) == 2


def test_bad_override_value_is_located_at_the_override(tmp_path, session):
    error = errors_of(write(tmp_path, GOOD), session, ["stages.train_denoiser.steps=many"])
    (issue,) = error.issues
    assert issue.location == "--set stages.train_denoiser.steps=many"
    assert issue.path == "stages.train_denoiser.steps" and issue.value == "many"


def test_all_errors_are_reported_at_once_with_lines_paths_and_values(tmp_path, session):
    text = GOOD.replace("seed: 3", "seed: three").replace("num_steps: 4", "num_steps: -1")
    text = text.replace("name: fake-schedule", "name: fake-schedul").replace("steps: 2}", "steps: 2, stpes: 1}")
    error = errors_of(write(tmp_path, text), session)
    found = {issue.path: issue for issue in error.issues}
    assert list(found) == ["seed", "components.schedule.name", "components.sampler.params.num_steps",
                           "stages.train_denoiser.stpes"]  # in file order
    assert found["seed"].location.endswith("run.yaml:2") and found["seed"].value == "three"
    assert found["components.sampler.params.num_steps"].location.endswith("run.yaml:9")
    assert found["components.sampler.params.num_steps"].value == -1
    assert "Did you mean 'fake-schedule'?" in found["components.schedule.name"].message
    assert found["stages.train_denoiser.stpes"].location.endswith("run.yaml:13")
    assert str(error).startswith(f"{tmp_path / 'run.yaml'}: 4 errors")


def test_unknown_component_names_the_available_ones_and_their_plugin(tmp_path, session):
    error = errors_of(write(tmp_path, GOOD.replace("name: fake-encoder", "name: fake-encodr")), session)
    (issue,) = error.issues
    assert issue.path == "components.encoder.name" and issue.location.endswith("run.yaml:4")
    assert "Unknown encoder 'fake-encodr'. Did you mean 'fake-encoder'?" in issue.message
    assert "'fake-encoder' (fakes)" in issue.message


def test_a_presets_derived_value_yields_to_the_encoder(tmp_path, session):
    text = GOOD.replace("preset: fake-wide", "preset: fake-bad-dim")
    assembly = load_assembly(write(tmp_path, text), session=session)
    assert assembly.components["decoder"].params["token_dim"] == 12  # the preset says 5, made for another encoder


def test_an_explicit_contradiction_of_a_derived_value_is_still_an_error(tmp_path, session):
    text = GOOD.replace("preset: fake-wide}", "preset: fake-bad-dim, params: {token_dim: 5}}")
    (issue,) = errors_of(write(tmp_path, text), session).issues
    assert issue.path == "components.decoder.params.token_dim" and issue.value == 5
    assert "(12, 4, 4)" in issue.message and issue.location.endswith("run.yaml:5")


def test_explicit_contradiction_and_unknown_preset(tmp_path, session):
    text = GOOD.replace("params: {hidden_size: 48}", "params: {hidden_size: 48, in_channels: 3}")
    text = text.replace("name: fake-sampler,", "name: fake-sampler, preset: nope,")
    error = errors_of(write(tmp_path, text), session)
    found = {issue.path: issue for issue in error.issues}
    assert found["components.denoiser.params.in_channels"].value == 3
    assert "Unknown sampler preset 'nope'" in found["components.sampler.preset"].message


def test_extra_role_needs_a_kind_and_guides_share_classes(tmp_path, session):
    text = GOOD.replace("guide: {kind: denoiser,", "guide: {").replace("hidden_size: 16}", "hidden_size: 16}")
    error = errors_of(write(tmp_path, text), session)
    assert [issue.path for issue in error.issues] == ["components.guide"]
    text = GOOD.replace("hidden_size: 16}", "hidden_size: 16, num_classes: 3}")
    error = errors_of(write(tmp_path, text), session)
    assert [issue.path for issue in error.issues] == ["components.guide.params.num_classes"]


def test_stages_need_their_roles_and_metrics_must_exist(tmp_path, session):
    text = "\n".join(line for line in GOOD.splitlines() if "sampler:" not in line)
    text = text.replace("metrics: [fake-metric]", "metrics: [fid]")
    error = errors_of(write(tmp_path, text), session)
    found = {issue.path: issue for issue in error.issues}
    assert "needs a component 'sampler'" in found["stages.sample"].message
    assert found["stages.evaluate.metrics.0"].value == "fid"


def test_missing_encoder_explains_derived_fields(tmp_path, session):
    text = "name: x\ncomponents:\n  denoiser: {name: fake-denoiser}\n"
    error = errors_of(write(tmp_path, text), session)
    assert {issue.path for issue in error.issues} == {"components.denoiser.params.in_channels",
                                                      "components.denoiser.params.input_size"}
    assert all("derived from the encoder" in issue.message for issue in error.issues)


def test_envelope_errors(tmp_path, session):
    text = "name: Bad Name\nextra: 1\ncomponents:\n  encoder: {name: fake-encoder, param: {}}\n"
    error = errors_of(write(tmp_path, text), session)
    paths = {issue.path for issue in error.issues}
    assert paths == {"name", "extra", "components.encoder.param"}


def test_yaml_syntax_and_non_mapping_errors(tmp_path, session):
    with pytest.raises(Exception, match=r"run.yaml:2: invalid YAML: mapping values"):
        load_assembly(write(tmp_path, "name: x\nseed: a: b\n"), session=session)
    error = errors_of(write(tmp_path, "- a\n- b\n"), session)
    assert error.issues[0].path == ""


def test_yaml_python_tags_are_rejected(tmp_path, session):
    with pytest.raises(Exception, match="invalid YAML"):
        load_assembly(write(tmp_path, "name: !!python/object/apply:os.system ['true']\n"), session=session)


def test_stage_checks_still_run_when_another_section_is_invalid(tmp_path, session):
    text = "\n".join(line for line in GOOD.splitlines() if "sampler:" not in line)
    text = text.replace("seed: 3", "seed: three").replace("name: fake-decoder,", "name: fake-decoder, prams: {},")
    error = errors_of(write(tmp_path, text), session)
    assert {issue.path for issue in error.issues} == {"seed", "components.decoder.prams", "stages.sample"}


def test_stage_one_loss_terms_without_their_component_are_flagged(tmp_path, session):
    assembly = load_assembly(write(tmp_path, GOOD), ["stages.train_decoder.gan_weight=0"], session=session)
    (warning,) = assembly.warnings
    assert warning.startswith("stages.train_decoder.perceptual_weight: 1.0 but no 'perceptual' component")


def test_stages_are_registered_names_with_mapping_values(tmp_path, session):
    text = GOOD.replace("  latent_stats: {}", "  latent_stats:").replace("  sample: {", "  smaple: {")
    error = errors_of(write(tmp_path, text), session)
    found = {issue.path: issue for issue in error.issues}
    assert "has no value" in found["stages.latent_stats"].message and found["stages.latent_stats"].location.endswith(":12")
    assert "Did you mean 'sample'?" in found["stages.smaple"].message


def test_stages_are_kept_in_their_registered_order_whatever_the_file_order(tmp_path, session):
    text = GOOD.replace("  train_decoder: {steps: 3, batch_size: 2}\n", "") + "  train_decoder: {steps: 3}\n"
    assembly = load_assembly(write(tmp_path, text), session=session)
    assert list(assembly.stages) == ["train_decoder", "latent_stats", "train_denoiser", "sample", "evaluate"]
    assert assembly.stages.train_decoder.steps == 3 and assembly.stages.spec("sample").reads[-1] == "train_denoiser"
    disabled = load_assembly(write(tmp_path, text), ["stages.sample.enabled=false"], session=session)
    assert disabled.stages.enabled() == ["train_decoder", "latent_stats", "train_denoiser", "evaluate"]


def test_a_denoiser_narrower_than_the_latent_channels_is_advised_against(tmp_path):
    path = tmp_path / "narrow.yaml"
    path.write_text("name: narrow\ncomponents:\n  encoder: {name: mae, preset: mae-tiny}\n"
                    "  decoder: {name: vit, preset: vit-tiny}\n"
                    "  denoiser: {name: lightning-dit, preset: lightning-dit-tiny, params: {hidden_size: 8, num_heads: 1}}\n"
                    "  schedule: {name: shifted-flow}\n")
    (warning,) = [item for item in load_assembly(str(path)).warnings if "narrower" in item]
    assert "widest layer (8)" in warning and "latent channels 32" in warning
