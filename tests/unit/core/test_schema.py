"""``rae schema`` accepts everything ``validate`` accepts: every example and recipe, checked with jsonschema."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from rae_framework import Session
from rae_framework.assembly import ComponentEnvelope
from rae_framework.describe import assembly_json_schema

REPOSITORY = Path(__file__).resolve().parents[3]
SESSION = Session()
SCHEMA = assembly_json_schema(SESSION)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _assemblies() -> list[Path]:
    files = sorted((REPOSITORY / "examples").rglob("*.y*ml"))
    return [path for path in files if "components" in (yaml.safe_load(path.read_text(encoding="utf-8")) or {})]


ASSEMBLIES = _assemblies()


def test_the_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert len(ASSEMBLIES) >= 5


@pytest.mark.parametrize("path", ASSEMBLIES, ids=[str(p.relative_to(REPOSITORY)) for p in ASSEMBLIES])
def test_every_example_and_recipe_conforms(path):
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
              for error in VALIDATOR.iter_errors(document)]
    assert errors == []


def test_component_variants_have_every_envelope_field():
    variants = SCHEMA["properties"]["components"]["additionalProperties"]["anyOf"]
    assert variants and all(set(variant["properties"]) == set(ComponentEnvelope.model_fields) for variant in variants)


def test_the_schema_still_rejects_what_validate_rejects():
    bad = {"name": "x", "components": {"sampler": {"name": "euler", "checkpont": "a.safetensors"}}}
    assert list(VALIDATOR.iter_errors(bad))
    assert list(VALIDATOR.iter_errors({"name": "x", "stages": {"sample": {"per_clas": 3}}}))
