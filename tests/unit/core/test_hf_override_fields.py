"""Typos in an HF encoder's ``overrides`` are validation errors, from field lists that match transformers."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from rae_encoders.configs import Dinov2Config, MAEConfig, Siglip2Config
from rae_encoders.hf_fields import FIELDS
from rae_framework import Session
from rae_framework.assembly import load_assembly
from rae_framework.errors import AssemblyError

REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_the_field_lists_match_the_installed_transformers(name):
    transformers = pytest.importorskip("transformers")
    config_class = getattr(transformers, name)
    known = set(inspect.signature(config_class.__init__).parameters) | set(config_class().to_dict())
    assert FIELDS[name] == known - {"self", "kwargs"}


@pytest.mark.parametrize("config, registers", [(Dinov2Config, True), (Dinov2Config, False), (MAEConfig, None),
                                               (Siglip2Config, None)])
def test_each_encoder_names_the_config_it_builds(config, registers):
    params = {} if registers is None else {"registers": registers}
    assert config(**params).hf_config_name() in FIELDS
    with pytest.raises(ValueError, match=r"unknown \w+Config field\(s\) 'hiden_size' \(did you mean 'hidden_size'\?\)"):
        config(**params, overrides={"hiden_size": 8})


def test_dinov2_without_registers_has_no_register_field():
    with pytest.raises(ValueError, match="num_register_tokens"):
        Dinov2Config(registers=False, overrides={"num_register_tokens": 2})
    assert Dinov2Config(overrides={"num_register_tokens": 2}).architecture()["num_register_tokens"] == 2


def test_a_typo_in_the_quickstarts_overrides_fails_validation(tmp_path):
    text = (REPOSITORY / "examples" / "quickstart.yaml").read_text().replace("num_hidden_layers", "num_hiden_layers")
    path = tmp_path / "q.yaml"
    path.write_text(text)
    with pytest.raises(AssemblyError) as caught:
        load_assembly(path, session=Session())
    (issue,) = caught.value.issues
    assert issue.path == "components.encoder.params"
    assert "'num_hiden_layers' (did you mean 'num_hidden_layers'?)" in issue.message
