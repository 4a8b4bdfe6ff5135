"""Every assembly under examples/ validates, and every catalogued recipe points at an existing, valid file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rae_framework import Session
from rae_framework.assembly import RECIPE_KIND, load_assembly, recipe_path

REPOSITORY = Path(__file__).resolve().parents[3]
SESSION = Session()


def _is_assembly(path: Path) -> bool:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return True  # a broken file must fail the test, not vanish from it
    return isinstance(document, dict) and "components" in document


ASSEMBLIES = sorted(path for path in (REPOSITORY / "examples").rglob("*.y*ml") if _is_assembly(path))
RECIPES = SESSION.presets.all(RECIPE_KIND)


@pytest.mark.parametrize("path", ASSEMBLIES, ids=[str(p.relative_to(REPOSITORY)) for p in ASSEMBLIES])
def test_example_assembly_validates_and_its_resolved_form_round_trips(path, tmp_path):
    assembly = load_assembly(path, session=SESSION)
    assert assembly.components
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(assembly.to_yaml())
    assert load_assembly(resolved, session=SESSION).resolved() == assembly.resolved()


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_points_at_a_valid_assembly(recipe):
    assert recipe.component == "assembly", f"{recipe.source}: a recipe's component is 'assembly'"
    path = recipe_path(recipe)
    assert path.is_file(), f"{recipe.source}: {path} does not exist"
    load_assembly(path, session=SESSION)
