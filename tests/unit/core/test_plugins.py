"""The plugin manager: isolation of broken plugins, misspelled hooks, duplicates, strict mode, presets hook."""

from __future__ import annotations

import json
import types

import pytest

from core_fakes import FakePlugin
from rae_framework import Session, hookimpl
from rae_framework.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError
from rae_framework.registry import Entry, Provenance, Registry


def plugin_module(**hooks) -> types.ModuleType:
    module = types.ModuleType("throwaway_plugin")
    for name, function in hooks.items():
        setattr(module, name, hookimpl(function))
    return module


def register_sampler(name):
    def rae_register_components(registrar):
        registrar.add("sampler", name, factory="core_fakes:FakeComponent", config="core_fakes:FakeSamplerConfig")
    return rae_register_components


def test_misspelled_hook_is_an_error_and_the_plugin_is_skipped():
    typo = plugin_module(rae_register_component=register_sampler("typo"))  # missing the final "s"
    session = Session(entry_points=False, plugins=[("typo", typo), ("fakes", FakePlugin())])
    (failed,) = session.plugin_manager.failures()
    assert failed.name == "typo" and "rae_register_component" in failed.error
    assert session.registry.contains("sampler", "fake-sampler")


def test_plugin_raising_while_registering_adds_nothing():
    def rae_register_components(registrar):
        registrar.add("sampler", "half", factory="core_fakes:FakeComponent", config="core_fakes:FakeSamplerConfig")
        raise RuntimeError("halfway")

    half = plugin_module(rae_register_components=rae_register_components)
    session = Session(entry_points=False, plugins=[("half", half)])
    assert "halfway" in session.plugin_manager.failures()[0].error
    assert not session.registry.contains("sampler", "half")


def test_duplicate_name_names_both_origins():
    first, second = (plugin_module(rae_register_components=register_sampler("x")) for _ in range(2))
    session = Session(entry_points=False, plugins=[("first", first), ("second", second)])
    (failed,) = session.plugin_manager.failures()
    assert "plugin 'first'" in failed.error and "plugin 'second'" in failed.error
    registry = Registry()
    entry = Entry("sampler", "x", "m:C", "m:Config", Provenance("a", "dist-a", "1.0"))
    registry.add(entry)
    with pytest.raises(DuplicateComponentError, match=r"plugin 'a' \(dist-a 1.0\) and by plugin 'b'"):
        registry.add(Entry("sampler", "x", "m:C", "m:Config", Provenance("b")))


def test_strict_mode_raises():
    with pytest.raises(PluginLoadError, match="Plugin 'typo' failed"):
        Session(entry_points=False, strict=True,
                plugins=[("typo", plugin_module(rae_register_component=register_sampler("t")))])


def test_preset_paths_hook_adds_presets(tmp_path):
    presets = tmp_path / "p.yaml"
    presets.write_text("kind: sampler\npresets:\n  fast-tiny: {component: fake-sampler, params: {num_steps: 2}}\n")
    session = Session(entry_points=False, plugins=[("fakes", FakePlugin([str(tmp_path)]))])
    assert session.make_config("sampler", "fake-sampler", preset="fast-tiny").num_steps == 2
    assert session.presets.get("sampler", "fast-tiny").source.endswith("p.yaml:3")


def test_unknown_name_suggests_and_lists_providers():
    session = Session(entry_points=False, plugins=[("fakes", FakePlugin())])
    with pytest.raises(UnknownComponentError, match=r"Unknown encoder 'fake-encodr'. Did you mean 'fake-encoder'\? "
                                                    r"Available: 'fake-encoder' \(fakes\)"):
        session.registry.get("encoder", "fake-encodr")
    with pytest.raises(UnknownComponentError, match="Did you mean 'encoder'"):
        session.registry.get("encodr", "x")


def test_disabled_plugins_are_reported():
    session = Session(disabled={"flow"})
    statuses = {report.name: report.status for report in session.plugin_manager.reports}
    assert statuses["flow"] == "disabled"
    assert "schedule" in session.registry.kinds and not session.registry.contains("sampler", "euler")


def test_plugin_with_a_malformed_preset_file_fails_alone(tmp_path):
    (tmp_path / "bad.yaml").write_text("kind: sampler\npresets:\n  x: {params: {}}\n")
    session = Session(entry_points=False, plugins=[("bad", FakePlugin([str(tmp_path)]))])
    (failed,) = session.plugin_manager.failures()
    assert failed.name == "bad" and "bad.yaml:3: preset 'x' needs a 'component' name" in failed.error
    assert session.presets.all("decoder")  # the first-party catalog is still there


def registering(*names):
    def rae_register_components(registrar):
        for name in names:
            registrar.add("sampler", name, factory="core_fakes:FakeComponent", config="core_fakes:FakeSamplerConfig")
    return plugin_module(rae_register_components=rae_register_components)


@pytest.mark.parametrize("names", [("good", "Bad Name"), ("good", "twice", "twice")], ids=["invalid", "duplicate"])
def test_a_plugin_failing_registration_leaves_nothing_behind(names):
    session = Session(entry_points=False, plugins=[("broken", registering(*names))])
    (failed,) = session.plugin_manager.failures()
    assert failed.name == "broken"
    assert not session.registry.contains("sampler", "good") and not session.registry.contains("sampler", "twice")


def test_a_failing_plugin_leaves_its_new_kind_out_too():
    def rae_register_components(registrar):
        registrar.add_kind("widget", "core_fakes:FakeComponent")
        registrar.add("widget", "w", factory="core_fakes:FakeComponent", config="core_fakes:FakeSamplerConfig")
        registrar.add("widget", "W!", factory="core_fakes:FakeComponent", config="core_fakes:FakeSamplerConfig")

    widgets = plugin_module(rae_register_components=rae_register_components)
    session = Session(entry_points=False, plugins=[("widgets", widgets)])
    assert session.plugin_manager.failures() and "widget" not in session.registry.kinds


def broken_references_plugin():
    def rae_register_components(registrar):
        registrar.add("sampler", "no-config", factory="core_fakes:FakeComponent", config="core_fakes:MissingConfig")
        registrar.add("sampler", "no-module", factory="no_such_module:Thing", config="core_fakes:FakeSamplerConfig")
        registrar.add("sampler", "not-a-model", factory="core_fakes:FakeComponent", config="core_fakes:FakeComponent")
    return plugin_module(rae_register_components=rae_register_components)


def test_check_references_reports_each_broken_one():
    session = Session(entry_points=False, plugins=[("broken", broken_references_plugin()), ("fakes", FakePlugin())])
    manager = session.plugin_manager
    manager.check_references()  # configs only: the factory of no-module is not imported
    (failed,) = manager.failures()
    assert failed.name == "broken" and failed.status == "failed"
    assert "sampler/no-config: config 'core_fakes:MissingConfig' does not import: AttributeError" in failed.error
    assert "sampler/not-a-model: config 'core_fakes:FakeComponent' is not a pydantic model class" in failed.error
    assert "no_such_module" not in failed.error
    manager.check_references(factories=True)  # a failed report stays failed; the fakes' classes resolve
    assert [report.name for report in manager.failures()] == ["broken"]


def test_plugins_check_names_a_broken_factory_and_exits_1(monkeypatch, capsys):
    from rae_framework import cli

    session = Session(entry_points=False, plugins=[("broken", broken_references_plugin()), ("fakes", FakePlugin())])
    monkeypatch.setattr(cli, "_session", lambda: session)
    assert cli.main(["plugins", "--check", "--json"]) == 1
    reports = {report["name"]: report for report in json.loads(capsys.readouterr().out)}
    assert reports["fakes"]["status"] == "loaded" and reports["broken"]["status"] == "failed"
    assert "sampler/no-module: factory 'no_such_module:Thing' does not import: ModuleNotFoundError" \
        in reports["broken"]["error"]


def test_every_first_party_reference_resolves():
    from rae_framework import compat

    compat.ensure_torchvision_importable()
    manager = Session().plugin_manager
    manager.check_references(factories=True)
    assert manager.failures() == [] and len(manager.reports) >= 6
