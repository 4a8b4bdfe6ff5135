"""A third-party plugin installed from its own package is discovered, listed, validated and contract-tested;
a plugin that raises at import is reported while the CLI keeps working."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from templates import install_template, run


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The encoder template installed with pip into its own folder."""
    return install_template("third_party_encoder", tmp_path_factory.mktemp("third_party"))


@pytest.mark.slow
def test_discovered_and_listed_with_provenance(installed, tmp_path):
    result = run(["-m", "rae_framework", "list", "encoder", "--json"], installed, tmp_path)
    assert result.returncode == 0, result.stderr
    (entry,) = [item for item in json.loads(result.stdout) if item["name"] == "patch-mean"]
    assert (entry["plugin"], entry["distribution"], entry["version"]) == ("patch_mean", "rae-patch-mean", "0.1.0")
    described = run(["-m", "rae_framework", "describe", "encoder", "patch-mean"], installed, tmp_path)
    assert described.returncode == 0 and "patch-mean-tiny" in described.stdout and "token_dim" in described.stdout


@pytest.mark.slow
def test_usable_from_an_assembly(installed, tmp_path):
    assembly = tmp_path / "patch.yaml"
    assembly.write_text(textwrap.dedent("""\
        name: third-party
        components:
          encoder: {name: patch-mean, preset: patch-mean-tiny, params: {token_dim: 48}}
          decoder: {name: vit, params: {num_patches: 16, hidden_size: 32, num_layers: 1, num_heads: 2,
                                        intermediate_size: 64, patch_size: 4}}
        stages:
          latent_stats: {}
        """))
    result = run(["-m", "rae_framework", "validate", str(assembly), "--print"], installed, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "token_dim: 48" in result.stdout and "input_size: 16" in result.stdout
    assert result.stdout.count("token_dim: 48") == 2  # the decoder's token_dim is derived from the encoder


@pytest.mark.slow
def test_passes_the_contract_tests(installed, tmp_path):
    tests = installed.parent / "src" / "tests"
    own = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], installed, tmp_path)
    assert own.returncode == 0, own.stdout[-3000:]
    assert "8 passed" in own.stdout, own.stdout[-3000:]
    suite = run(["-m", "pytest", "-v", "-p", "no:cacheprovider", "--pyargs", "rae_framework.testing.suite",
                 "--rae-contract-plugin", "patch_mean"], installed, tmp_path)
    assert suite.returncode == 0, suite.stdout[-3000:]
    ran = [line for line in suite.stdout.splitlines() if " PASSED" in line]
    assert len(ran) == 8 and all("patch-mean[patch-mean-tiny]" in line for line in ran), suite.stdout[-3000:]


@pytest.fixture
def broken_plugin(tmp_path) -> Path:
    """A throwaway distribution whose plugin module raises at import."""
    site = tmp_path / "site"
    info = site / "rae_broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rae-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rae_framework]\nbroken = rae_broken_plugin\n")
    (site / "rae_broken_plugin.py").write_text("raise RuntimeError('kaput at import')\n")
    return site


def test_broken_plugin_is_reported_and_skipped(broken_plugin, tmp_path):
    result = run(["-m", "rae_framework", "plugins", "--json"], broken_plugin, tmp_path)
    assert result.returncode == 0, result.stderr
    (report,) = [item for item in json.loads(result.stdout) if item["name"] == "broken"]
    assert report["status"] == "failed" and "kaput at import" in report["error"]
    assert report["distribution"] == "rae-broken-plugin"
    assert any(item["status"] == "loaded" for item in json.loads(result.stdout))
    listed = run(["-m", "rae_framework", "list"], broken_plugin, tmp_path)
    assert listed.returncode == 0 and "euler" in listed.stdout
    assembly = tmp_path / "a.yaml"
    assembly.write_text("name: survives\ncomponents:\n  sampler: {name: euler}\n")
    assert run(["-m", "rae_framework", "validate", str(assembly)], broken_plugin, tmp_path).returncode == 0


def test_strict_and_disabled_plugins(broken_plugin, tmp_path):
    strict = run(["-m", "rae_framework", "list"], broken_plugin, tmp_path, RAE_STRICT_PLUGINS="1")
    assert strict.returncode == 1 and "Plugin 'broken' failed to load" in strict.stderr
    assert "Traceback" not in strict.stderr
    disabled = run(["-m", "rae_framework", "plugins", "--json"], broken_plugin, tmp_path,
                   RAE_DISABLE_PLUGINS="broken")
    (report,) = [item for item in json.loads(disabled.stdout) if item["name"] == "broken"]
    assert report["status"] == "disabled" and report["error"] is None


@pytest.fixture(scope="module")
def conditioner_plugin(tmp_path_factory) -> Path:
    """The conditioner template (examples/third_party_conditioner) installed with pip into its own folder."""
    return install_template("third_party_conditioner", tmp_path_factory.mktemp("conditioner_plugin"))


@pytest.mark.slow
def test_a_conditioner_plugin_is_listed_and_passes_its_contract(conditioner_plugin, tmp_path):
    listed = run(["-m", "rae_framework", "list", "conditioner"], conditioner_plugin, tmp_path)
    assert listed.returncode == 0 and "hashed-words" in listed.stdout and "rae-hashed-words" in listed.stdout
    tests = conditioner_plugin.parent / "src" / "tests"
    own = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], conditioner_plugin, tmp_path)
    assert own.returncode == 0 and "9 passed" in own.stdout, own.stdout[-3000:]
