"""The benchmark scripts that tests can run: gpu_check's dry run and bench_vs_reference's skip and tiny run."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import sys

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
REFERENCE = Path(os.environ.get("RAE_REFERENCE_SOURCE", "/work/ref/RAE"))


def bench_module(name: str):
    """Import ``bench/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_runs_every_check_on_cpu(tmp_path):
    out = tmp_path / "figures.json"
    bench_module("gpu_check").main(["--dry-run", "--out", str(out)])
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["environment"]["dry_run"] is True
    assert set(checks) == {"attention", "dit_dh_xl_step", "autoencoder", "draws", "latent_cache"}
    assert not [name for name, figures in checks.items() if "error" in figures]
    assert checks["attention"]["xformers"].startswith("skipped: xformers memory_efficient_attention needs CUDA")
    assert checks["dit_dh_xl_step"]["step_ms"] > 0 and checks["dit_dh_xl_step"]["tflop_per_step"] > 0
    assert checks["draws"]["equal_to_cpu_draws"] and checks["latent_cache"]["close"]
    assert checks["autoencoder"]["encode_images_per_s"] > 0


def test_bench_vs_reference_is_skipped_cleanly_without_the_source(capsys):
    assert bench_module("bench_vs_reference").main([]) == {}
    assert "skipped" in capsys.readouterr().out


@pytest.mark.skipif(not (REFERENCE / "src" / "stage2").is_dir(), reason="reference source not present")
def test_bench_vs_reference_tiny_run_times_every_task(monkeypatch):
    pytest.importorskip("einops")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the bench puts the reference's src/ on sys.path
    modules = set(sys.modules)
    try:
        ratios = bench_module("bench_vs_reference").main(["--reference", str(REFERENCE), "--tiny", "--repeats", "1",
                                                          "--grid", "3"])
    finally:
        for name in set(sys.modules) - modules:  # the reference's top-level packages (stage2, utils, ...)
            if name.split(".")[0] in {"stage2", "utils", "omegaconf"}:
                del sys.modules[name]
    assert len(ratios) == 4 and all(ratio > 0 for ratio in ratios.values())
