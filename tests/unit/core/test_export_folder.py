"""The torch-free parts of ``rae export`` and of reading an export back: target checks, format, model card,
Hub repo ids and the offline error (real huggingface_hub, nothing in its cache)."""

from __future__ import annotations

import pytest
import yaml

from rae_framework.errors import ConfigError
from rae_framework.interop.exported import is_exported
from rae_framework.interop.hub import is_hub_candidate, snapshot
from rae_framework.interop.hub_export import check_target, export_run
from rae_framework.interop.model_card import render_card


def test_target_must_be_absent_or_empty_unless_forced(tmp_path):
    out_dir, run_dir = tmp_path / "out", tmp_path / "run"
    check_target(out_dir, run_dir, force=False)  # absent
    out_dir.mkdir()
    check_target(out_dir, run_dir, force=False)  # empty
    (out_dir / "file").write_text("x")
    with pytest.raises(ConfigError, match="not empty; choose another OUT_DIR or pass --force"):
        check_target(out_dir, run_dir, force=False)
    check_target(out_dir, run_dir, force=True)
    with pytest.raises(ConfigError, match="is not a folder"):
        check_target(out_dir / "file", run_dir, force=True)


@pytest.mark.parametrize(("target", "relation"), [("run", "is"), ("run/export", "inside"), (".", "holds"),
                                                  ("run/../run", "is")])
def test_the_run_directory_itself_is_never_a_target_even_forced(tmp_path, monkeypatch, target, relation):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "assembly.yaml").write_text("name: t\n")
    with pytest.raises(ConfigError, match=f"{relation} the run directory run; export to a folder apart from it"):
        export_run("run", target, force=True)
    assert (tmp_path / "run" / "assembly.yaml").read_text() == "name: t\n"


def test_unknown_format_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ConfigError, match="--format 'onnx': expected one of diffusers"):
        export_run(tmp_path / "no-run", tmp_path / "out", export_format="onnx")


def test_a_missing_run_directory_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no-run: no such run directory"):
        export_run(tmp_path / "no-run", tmp_path / "out")


def test_repo_ids_are_tried_only_for_names_that_are_no_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_candidate("user/model") and is_hub_candidate("org-1/rae_dit.xl")
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    assert not is_hub_candidate("runs/quickstart")  # a local run directory wins
    for text in ("./user/model", "/abs/path", "a/b/c", "single", "user/"):
        assert not is_hub_candidate(text), text
    assert not is_exported(tmp_path / "runs")


def test_an_uncached_repo_offline_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"no snapshot of the Hub repo rae-tests/never-cached .* while offline; "
                                          r"download it with 'huggingface-cli download rae-tests/never-cached'"):
        snapshot("rae-tests/never-cached", local_files_only=True)


def test_model_card_front_matter_is_hub_metadata():
    card = render_card(repo_name="me/tiny", assembly_yaml="name: tiny\n", metrics={"fid": 3.5}, has_grid=False,
                       encoder="dinov2", denoiser="dit-dh", latent_shape=(768, 16, 16), license_id="apache-2.0",
                       num_classes=1000)
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata == {"library_name": "rae-framework", "license": "apache-2.0",
                        "pipeline_tag": "unconditional-image-generation",
                        "tags": ["rae", "representation-autoencoder", "diffusion", "flow-matching",
                                 "class-conditional", "image-generation", "dinov2", "dit-dh"]}
    for expected in ("# tiny", '"fid": 3.5', "```yaml\nname: tiny\n```", "768x16x16", "1000 classes",
                     'AutoencoderRAE.from_pretrained("me/tiny", subfolder="vae")', 'load_exported("me/tiny")',
                     "wrote no sample grid"):
        assert expected in card, expected
