"""Contract tests that would collect no case fail loudly (a typo must not pass as "N skipped")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core_fakes import FakePlugin
from rae_framework import Session
from rae_framework.testing.contracts import no_case_problem, unknown_plugins

CASES = {
    "test_typo.py": 'TestTypo = contract_tests_for("encoder", "dinov")',
    "test_kind.py": 'TestKind = contract_tests_for("encodr", "dinov2")',
    "test_fine.py": 'TestFine = contract_tests_for("guidance", "cfg")',
}


def _pytest(cwd: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout
    return result.stdout + result.stderr


def test_a_misspelled_component_or_kind_fails_collection(tmp_path):
    for name, body in CASES.items():
        (tmp_path / name).write_text(f"from rae_framework.testing import contract_tests_for\n\n{body}\n")
    out = _pytest(tmp_path, "--collect-only", *CASES)
    assert "ERROR test_typo.py::TestTypo" in out and "ERROR test_kind.py::TestKind" in out
    assert "no contract case collected: no encoder 'dinov' is registered. Did you mean 'dinov2'?" in out
    assert "no contract case collected: unknown kind 'encodr'. Did you mean 'encoder'?" in out
    assert "ERROR test_fine.py" not in out and "test_fine.py::TestFine::" in out


def test_an_unknown_plugin_name_fails_the_suite(tmp_path):
    out = _pytest(tmp_path, "--collect-only", "--pyargs", "rae_framework.testing.suite",
                  "--rae-contract-plugin", "patch_meen")
    assert "no plugin 'patch_meen' (plugins: conditioners, decoders, denoisers" in out


def test_the_reasons_in_process():
    session = Session(entry_points=False, plugins=[("fakes", FakePlugin())])
    assert "sampler 'fake-sampler' has no '-tiny' preset" in no_case_problem(session, "sampler", "fake-sampler", [])
    assert "not provided by --rae-contract-plugin other" in no_case_problem(session, "sampler", "fake-sampler",
                                                                            ["other"])
    assert no_case_problem(session, "sampler", None, []) is None  # the whole kind may legitimately be empty
    assert unknown_plugins(session, ["fakes"]) is None
    assert "no plugin 'fake'" in unknown_plugins(session, ["fake"])
