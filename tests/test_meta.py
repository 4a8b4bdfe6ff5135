"""Meta-tests: the hooks are documented and tested; every component has presets and is contract-tested."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from rae_framework import Session
from rae_framework.hookspecs import PROJECT_NAME, RAEHookSpec
from rae_framework.testing import KIND_CONTRACTS, contract_cases

TESTS = Path(__file__).resolve().parent
HOOKS = [name for name, member in inspect.getmembers(RAEHookSpec, inspect.isfunction)
         if hasattr(member, f"{PROJECT_NAME}_spec")]
SESSION = Session()
ENTRIES = list(SESSION.registry.entries())


def test_there_are_hooks():
    assert {"rae_register_components", "rae_preset_paths"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_is_documented(hook):
    assert len(inspect.getdoc(getattr(RAEHookSpec, hook)) or "") > 40, f"hookspec {hook} needs a real docstring"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_implemented_by_a_test_plugin(hook):
    """Some test defines an implementation of the hook (a function or method of that name)."""
    implementing = []
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        if hook in names and path.name != "test_meta.py":
            implementing.append(path)
    assert implementing, f"no test implements the hook {hook}"


def test_every_installed_plugin_loads():
    failures = {report.name: report.error for report in SESSION.plugin_manager.failures()}
    assert failures == {}, "a failed plugin's components would silently miss the contract tests"


def test_the_registry_is_not_empty():
    assert ENTRIES, "no component is registered: are the first-party plugins installed (pip install -e .)?"


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.kind}/{e.name}" for e in ENTRIES])
def test_component_has_a_preset_and_a_tiny_preset(entry):
    names = [preset.name for preset in SESSION.presets.all(entry.kind) if preset.component == entry.name]
    if entry.kind != "stage":  # a stage's real settings are an assembly's (the recipes), not a preset
        assert [name for name in names if not name.endswith("-tiny")], f"{entry.kind} '{entry.name}' has no real preset"
    assert [name for name in names if name.endswith("-tiny")], f"{entry.kind} '{entry.name}' has no -tiny preset"


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.kind}/{e.name}" for e in ENTRIES])
def test_component_is_covered_by_the_contract_tests(entry):
    exclude = tuple(KIND_CONTRACTS) if entry.kind not in KIND_CONTRACTS else ()
    kind = entry.kind if entry.kind in KIND_CONTRACTS else None
    cases = contract_cases(SESSION, kind, component=entry.name, exclude_kinds=exclude)
    assert cases, f"{entry.kind} '{entry.name}' gets no contract test case"


def test_the_contract_suite_collects_every_contract_class():
    from rae_framework.testing import suite

    text = (TESTS / "contract" / "test_registry_contracts.py").read_text(encoding="utf-8")
    classes = [name for name in vars(suite) if name.startswith("Test")]
    assert len(classes) == len(KIND_CONTRACTS) + 1
    assert all(name in text for name in classes), "tests/contract must import every class of the suite"
