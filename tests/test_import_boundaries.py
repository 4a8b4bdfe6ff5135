"""The core imports no plugin, and plugins (first- and third-party) import only the core's public modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rae_framework

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = sorted(path.name for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").is_file())
PLUGIN_SOURCES = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").glob("third_party_*/**/*.py")]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in a file, including imports inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_there_are_plugins_and_sources_to_check():
    assert {"rae_encoders", "rae_gan", "rae_stages"} <= set(PLUGIN_PACKAGES) and len(PLUGIN_SOURCES) > 20


@pytest.mark.parametrize("path", sorted((ROOT / "rae_framework").rglob("*.py")), ids=lambda p: p.name)
def test_the_core_imports_no_plugin(path):
    edges = [f"{path.relative_to(ROOT)}:{line} imports {module}" for line, module in imported_modules(path)
             if module.split(".")[0] in PLUGIN_PACKAGES]
    assert edges == [], "the core must reach plugins only through the registry"


@pytest.mark.parametrize("path", sorted(PLUGIN_SOURCES), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_public_core_modules(path):
    private = [f"{path.relative_to(ROOT)}:{line} imports {module}" for line, module in imported_modules(path)
               if module.split(".")[0] == "rae_framework" and module not in rae_framework.PUBLIC_MODULES]
    assert private == [], f"public core modules: {', '.join(rae_framework.PUBLIC_MODULES)}"


def test_the_boundary_check_catches_a_violation(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    from rae_framework.engine.runner import run_assembly\n    import rae_gan.losses\n")
    modules = [module for _, module in imported_modules(sneaky)]
    assert "rae_framework.engine.runner" not in rae_framework.PUBLIC_MODULES and "rae_gan.losses" in modules
