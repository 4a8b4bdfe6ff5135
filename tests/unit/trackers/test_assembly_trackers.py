"""The assembly's ``trackers`` section: names or {name, params}, checked against the registry with suggestions and
file lines, defaulting to TensorBoard, and part of the resolved assembly."""

from __future__ import annotations

import pytest

from rae_framework import load_assembly
from rae_framework.errors import AssemblyError


def assembly_from(tmp_path, session, text: str):
    (tmp_path / "a.yaml").write_text(f"name: trk\n{text}")
    return load_assembly(tmp_path / "a.yaml", session=session)


def problems(tmp_path, session, text: str) -> str:
    with pytest.raises(AssemblyError) as caught:
        assembly_from(tmp_path, session, text)
    return str(caught.value)


def test_absent_means_tensorboard_and_an_empty_list_means_none(tmp_path, session):
    assert [spec.name for spec in assembly_from(tmp_path, session, "").trackers] == ["tensorboard"]
    assert assembly_from(tmp_path, session, "trackers: []\n").trackers == ()


def test_names_and_mappings_resolve_with_their_full_params(tmp_path, session):
    assembly = assembly_from(tmp_path, session, "trackers: [tensorboard, {name: wandb, params: {project: rae}}]\n")
    tensorboard, wandb = assembly.trackers
    assert tensorboard.params == {"folder": "tensorboard"}
    assert wandb.name == "wandb" and wandb.params["project"] == "rae" and wandb.params["mode"] is None
    assert wandb.config.project == "rae"
    assert assembly.resolved()["trackers"][1] == {"name": "wandb", "params": wandb.params}
    (tmp_path / "again.yaml").write_text(assembly.to_yaml())
    assert load_assembly(tmp_path / "again.yaml", session=session).resolved() == assembly.resolved()


def test_every_mistake_is_reported_at_its_line_with_a_suggestion(tmp_path, session):
    text = problems(tmp_path, session, "trackers:\n  - tensorbord\n  - {name: mlflow, params: {tracking_ur: x}}\n"
                                       "  - 5\n  - {nme: wandb}\n  - mlflow\n")
    assert "a.yaml:3: trackers.0: Unknown tracker 'tensorbord'. Did you mean 'tensorboard'? Available: mlflow, " \
           "tensorboard, wandb" in text
    assert "a.yaml:4: trackers.1.params.tracking_ur: Extra inputs are not permitted. Did you mean " \
           "'tracking_uri'?" in text
    assert "a.yaml:5: trackers.2: a tracker is a name or a mapping {name, params} (got 5)" in text
    assert "a.yaml:6: trackers.3.nme: Extra inputs are not permitted. Did you mean 'name'?" in text
    assert "a.yaml:7: trackers.4: tracker 'mlflow' is named twice" in text


def test_a_section_that_is_not_a_list_is_an_error(tmp_path, session):
    assert "a.yaml:2: trackers: Input should be a valid list" in problems(tmp_path, session, "trackers: wandb\n")


def test_a_set_override_chooses_the_trackers(tmp_path, session):
    (tmp_path / "a.yaml").write_text("name: trk\n")
    assembly = load_assembly(tmp_path / "a.yaml", ["trackers=[mlflow]"], session=session)
    assert [spec.name for spec in assembly.trackers] == ["mlflow"]
    with pytest.raises(AssemblyError, match=r"--set trackers=\[wandbb\]: trackers.0: Unknown tracker 'wandbb'. "
                                            r"Did you mean 'wandb'"):
        load_assembly(tmp_path / "a.yaml", ["trackers=[wandbb]"], session=session)
