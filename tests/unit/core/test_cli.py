"""The CLI in-process (with the fake plugin) and in subprocesses (real plugins, no torch import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core_fakes import STAGES_PLUGIN, FakePlugin
from rae_framework import Session, cli

REPOSITORY = Path(__file__).resolve().parents[3]

ASSEMBLY = """\
name: cli-run
components:
  encoder: {name: fake-encoder}
  decoder: {name: fake-decoder}
stages:
  train_decoder: {steps: 1}
"""


@pytest.fixture
def fake_cli(monkeypatch):
    session = Session(entry_points=False, plugins=[("fakes", FakePlugin()), STAGES_PLUGIN])
    monkeypatch.setattr(cli, "_session", lambda: session)
    return session


@pytest.fixture
def assembly_file(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(ASSEMBLY)
    return path


def test_validate_ok_and_print(fake_cli, assembly_file, capsys):
    assert cli.main(["validate", str(assembly_file)]) == 0
    assert "ok (cli-run: encoder=fake-encoder, decoder=fake-decoder)" in capsys.readouterr().out
    assert cli.main(["validate", str(assembly_file), "--print", "--set", "seed=5"]) == 0
    assert "seed: 5" in capsys.readouterr().out


def test_validate_invalid_exits_2_with_location_and_no_traceback(fake_cli, assembly_file, capsys):
    code = cli.main(["validate", str(assembly_file), "--set", "components.decoder.params.hidden_size=x"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--set components.decoder.params.hidden_size=x: components.decoder.params.hidden_size" in err
    assert "Traceback" not in err


def test_validate_missing_file_exits_2(fake_cli, tmp_path, capsys):
    assert cli.main(["validate", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: cannot read" in capsys.readouterr().err


def test_debug_shows_the_traceback(fake_cli, tmp_path, capsys):
    assert cli.main(["--debug", "validate", str(tmp_path / "none.yaml")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_run_without_engine_or_with_failing_engine_exits_1(fake_cli, assembly_file, monkeypatch, capsys):
    def failing_engine(assembly, out_dir, *, resume, stages):
        raise RuntimeError(f"boom {assembly.name} {out_dir.name} {resume} {stages}")

    monkeypatch.setattr(cli, "_engine_runner", lambda: failing_engine)
    code = cli.main(["run", str(assembly_file), "--out", "x", "--fresh", "--stage", "sample"])
    assert code == 1
    assert "boom cli-run x False ['sample']" in capsys.readouterr().err


def test_unknown_stage_is_invalid_input_and_debug_works_after_the_command(fake_cli, assembly_file, capsys):
    assert cli.main(["run", str(assembly_file), "--stage", "sampel", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "--stage sampel: unknown stage. Did you mean 'sample'?" in err and "Traceback" in err


@pytest.mark.parametrize("out", ["taken", "taken/run"])
def test_a_file_where_the_run_directory_goes_exits_2_and_is_left_alone(fake_cli, assembly_file, tmp_path, out,
                                                                       capsys):
    (tmp_path / "taken").write_text("keep me")
    assert cli.main(["run", str(assembly_file), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert f"run directory {tmp_path / out}: {tmp_path / 'taken'} exists and is not a folder; choose another --out" \
        in err and "Traceback" not in err
    assert (tmp_path / "taken").read_text() == "keep me"


def test_a_run_directory_that_cannot_be_created_exits_2(fake_cli, assembly_file, tmp_path, capsys):
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    out = "/proc/rae-run" if os.geteuid() == 0 else readonly / "run"  # root writes anywhere but in /proc
    readonly.chmod(0o500)
    try:
        assert cli.main(["run", str(assembly_file), "--out", str(out)]) == 2
    finally:
        readonly.chmod(0o700)
    err = capsys.readouterr().err
    assert f"run directory {out}: cannot be created (" in err and "choose another --out" in err


@pytest.mark.parametrize(("option", "target", "message"), [
    ("--npz", "folder", "is a folder; name a file to write"),
    ("--out", "taken/grid.png", "exists and is not a folder; choose another path")])
def test_sample_refuses_an_unwritable_output_before_it_loads_the_run(tmp_path, option, target, message, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "taken").write_text("keep me")
    code = cli.main(["sample", str(tmp_path / "no-run"), "--labels", "1", option, str(tmp_path / target)])
    assert code == 2 and f"{option} {tmp_path / target}: " in (err := capsys.readouterr().err) and message in err


def test_run_hands_the_assembly_to_the_engine_and_reports_what_it_did(fake_cli, assembly_file, monkeypatch,
                                                                      tmp_path, capsys):
    from rae_framework.engine.runner import RunResult

    calls = []

    def engine(*args, **kwargs):
        calls.append((args, kwargs))
        return RunResult(args[1], ran=["sample"], skipped=["train_denoiser"], metrics={"fid": 3.25},
                         outputs={"samples": tmp_path / "o" / "samples" / "samples.npz"})

    monkeypatch.setattr(cli, "_engine_runner", lambda: engine)
    assert cli.main(["run", str(assembly_file), "--out", str(tmp_path / "o"), "--set", "seed=9"]) == 0
    ((assembly, out_dir), kwargs), = calls
    assert assembly.seed == 9 and out_dir == tmp_path / "o" and kwargs == {"resume": True, "stages": None}
    out = capsys.readouterr().out
    assert "ran: sample; up to date: train_denoiser" in out and "metric fid = 3.25" in out
    assert f"samples: {tmp_path / 'o' / 'samples' / 'samples.npz'}" in out


def test_list_and_describe(fake_cli, capsys):
    assert cli.main(["list", "encoder", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == "fake-encoder" and entry["plugin"] == "fakes"
    assert cli.main(["describe", "encoder", "fake-encoder"]) == 0
    out = capsys.readouterr().out
    assert "patch_size" in out and "Patch side." in out and "4" in out
    assert cli.main(["describe", "encoder", "fake-encodr"]) == 2
    assert "Did you mean 'fake-encoder'?" in capsys.readouterr().err
    assert cli.main(["list", "encodr"]) == 2


def test_describe_a_preset_shows_it_and_its_component(monkeypatch, tmp_path, capsys):
    presets = tmp_path / "p.yaml"
    presets.write_text("kind: sampler\npresets:\n  quick: {component: fake-sampler, params: {num_steps: 2}}\n")
    session = Session(entry_points=False, plugins=[("fakes", FakePlugin([str(presets)])), STAGES_PLUGIN])
    monkeypatch.setattr(cli, "_session", lambda: session)
    assert cli.main(["describe", "sampler", "quick"]) == 0
    out = capsys.readouterr().out
    assert "sampler preset 'quick'" in out and '{"num_steps": 2}' in out and "sampler 'fake-sampler'" in out


def test_schema_types_component_params(fake_cli, capsys):
    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    variants = schema["properties"]["components"]["additionalProperties"]["anyOf"]
    names = {variant["properties"]["name"]["const"] for variant in variants}
    assert "fake-denoiser" in names
    denoiser = schema["$defs"]["FakeDenoiserConfig"]
    assert "in_channels" in denoiser["properties"] and "required" not in denoiser
    assert schema["required"] == ["name"]


def rae(*args: str, env: dict | None = None, cwd: Path = REPOSITORY) -> subprocess.CompletedProcess:
    """``python -m rae_framework ARGS`` that also reports whether torch got imported."""
    code = ("import sys, runpy; sys.argv = ['rae', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('rae_framework', run_name='__main__')\n"
            "except SystemExit as exit:\n    print('TORCH-IMPORTED' if 'torch' in sys.modules else 'TORCH-FREE',"
            " file=sys.stderr)\n    raise\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_help_list_describe_schema_plugins_never_import_torch(tmp_path):
    for args in (["--help"], ["list"], ["list", "presets", "--json"], ["plugins", "--json"], ["schema"],
                 ["describe", "sampler", "euler"]):
        result = rae(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "TORCH-FREE" in result.stderr, args


def test_validate_never_imports_torch(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent("""\
        name: flow-only
        components:
          sampler: {name: euler, params: {num_steps: 4}}
          guidance: {name: cfg}
        """))
    quickstart = REPOSITORY / "examples" / "quickstart.yaml"
    for assembly in [path, quickstart] if quickstart.exists() else [path]:
        result = rae("validate", str(assembly))
        assert result.returncode == 0, result.stderr
        assert "TORCH-FREE" in result.stderr, assembly


def test_recipes_are_listed_and_described_and_validated(monkeypatch, tmp_path, assembly_file, capsys):
    catalog = tmp_path / "recipes.yaml"
    catalog.write_text(f"kind: recipe\npresets:\n"
                       f"  good: {{component: assembly, params: {{path: {assembly_file}}}, summary: works}}\n"
                       f"  gone: {{component: assembly, params: {{path: nowhere.yaml}}, summary: missing}}\n")
    session = Session(entry_points=False, plugins=[("fakes", FakePlugin([str(catalog)])), STAGES_PLUGIN])
    monkeypatch.setattr(cli, "_session", lambda: session)
    assert cli.main(["list", "presets", "--json"]) == 0
    recipes = [p for p in json.loads(capsys.readouterr().out) if p["kind"] == "recipe"]
    assert {"good", "gone"} <= {p["name"] for p in recipes}
    assert cli.main(["list", "recipe"]) == 0
    assert "good" in capsys.readouterr().out
    assert cli.main(["describe", "recipe", "good"]) == 0
    out = capsys.readouterr().out
    assert "recipe 'good': works" in out and "valid: encoder=fake-encoder" in out
    assert cli.main(["describe", "recipe", "gone"]) == 0
    assert "not present" in capsys.readouterr().out
    assembly_file.write_text(ASSEMBLY.replace("steps: 1", "steps: 0"))
    assert cli.main(["describe", "recipe", "good"]) == 2
    assert "stages.train_decoder.steps" in capsys.readouterr().err
