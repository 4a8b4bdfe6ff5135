"""run_assembly end to end on the real tiny presets: every stage, the run-directory layout, stage skipping."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import rae_framework
from rae_framework.engine.distributed import DistContext
from rae_framework.engine.run_state import RunState
from rae_framework.engine.runner import run_assembly
from rae_stages.sample import run_sampling
from rae_framework.engine import build_rae

from tiny_run import tiny_assembly

ASSEMBLY = tiny_assembly("engine-tiny", """\
  train_decoder: {steps: 2, batch_size: 8, checkpoint_every: 1, sample_every: 2, eval_images: 8,
                  discriminator_start_step: 0, gan_start_step: 1}
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 3, batch_size: 16, checkpoint_every: 2}
  sample: {per_class: 1, batch_size: 10}
  evaluate: {metrics: [psnr, fid-tiny, precision-recall-tiny, inception-score-tiny]}
""", extra_components="  discriminator: {name: dino, preset: dino-tiny}\n")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine")
    (folder / "tiny.yaml").write_text(ASSEMBLY)
    assembly = rae_framework.load_assembly(str(folder / "tiny.yaml"))
    return folder, run_assembly(assembly, folder / "run")


@pytest.mark.slow
def test_every_stage_writes_its_outputs(finished_run):
    folder, result = finished_run
    run = folder / "run"
    assert result.ran == ["train_decoder", "latent_stats", "train_denoiser", "sample", "evaluate"]
    for name in ("assembly.yaml", "log.txt", "metrics.csv", "metrics.json", "samples/grid.png",
                 "checkpoints/decoder_ema.safetensors", "checkpoints/latent_stats.safetensors",
                 "checkpoints/denoiser_ema.safetensors", "reconstructions/step_00000002.png"):
        assert (run / name).is_file(), name
    with np.load(run / "samples" / "samples.npz") as samples:
        assert samples["arr_0"].dtype == np.uint8 and samples["arr_0"].shape == (10, 16, 16, 3)
        assert samples["arr_1"].dtype == np.int64 and samples["arr_1"].tolist() == list(range(10))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["psnr"] > 0 and len(metrics) >= 6, metrics  # psnr, fid, precision, recall, IS mean + std
    assert all(np.isfinite(value) for value in metrics.values())
    assert list((run / "tensorboard").iterdir())


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_reruns_changed_ones(finished_run):
    folder, _ = finished_run
    changed = rae_framework.load_assembly(str(folder / "tiny.yaml"), ["stages.sample.per_class=2"])
    result = run_assembly(changed, folder / "run")
    assert result.skipped == ["train_decoder", "latent_stats", "train_denoiser"]
    assert result.ran == ["sample", "evaluate"]  # evaluate consumes the new samples
    with np.load(folder / "run" / "samples" / "samples.npz") as samples:
        assert samples["arr_0"].shape[0] == 20
    alone = run_assembly(changed, folder / "run", stages=["sample"])
    assert alone.skipped == ["sample"] and alone.ran == []


def _sample_with(run: Path, assembly, weights_file: str, out: Path) -> np.ndarray:
    state = RunState(run, assembly, DistContext())
    denoiser = state.component("denoiser")
    denoiser.load_state_dict(load_file(str(run / "checkpoints" / weights_file)))
    rae = build_rae(state)
    run_sampling(denoiser.eval(), state.component("schedule"), state.component("sampler"),
                 lambda z: rae.decode(z).clamp(0, 1), assembly.stages.sample, out, seed=assembly.seed,
                 guidance=state.component("guidance"))
    with np.load(out / "samples.npz") as samples:
        return samples["arr_0"]


@pytest.mark.slow
def test_samples_come_from_the_ema_weights(finished_run, tmp_path):
    folder, _ = finished_run
    assembly = rae_framework.load_assembly(str(folder / "tiny.yaml"), ["stages.sample.per_class=2"])
    run_assembly(assembly, folder / "run", stages=["sample"])
    with np.load(folder / "run" / "samples" / "samples.npz") as samples:
        written = samples["arr_0"]
    assert np.array_equal(_sample_with(folder / "run", assembly, "denoiser_ema.safetensors", tmp_path / "e"), written)
    assert not np.array_equal(_sample_with(folder / "run", assembly, "denoiser.safetensors", tmp_path / "r"), written)


@pytest.mark.slow
def test_two_process_decoder_statistics_and_sampling_match_one_process(finished_run, tmp_path):
    """Through the CLI under torchrun: the decoder (GAN, DiffAugment, latent noise drawn per global row
    block), the statistics, the samples and the metrics equal those of the one-process run."""


    folder, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(folder / "run", run)
    for stage in ("train_decoder", "latent_stats", "sample", "evaluate"):
        (run / "stages" / stage / "stage_state.json").unlink()
    shutil.rmtree(run / "checkpoints" / "train_decoder")  # train it again, from step 0, with 2 processes
    per_class = yaml.safe_load((run / "assembly.yaml").read_text())["stages"]["sample"]["per_class"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
               "2", "-m", "rae_framework", "run", str(folder / "tiny.yaml"), "--out", str(run),
               "--set", f"stages.sample.per_class={per_class}",  # as the earlier tests left the run
               "--stage", "train_decoder", "--stage", "latent_stats", "--stage", "sample", "--stage", "evaluate"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    single, double = (load_file(str(path / "checkpoints" / "decoder_ema.safetensors")) for path in (folder / "run", run))
    for key in single:
        torch.testing.assert_close(double[key], single[key], rtol=1e-5, atol=1e-6)
    single, double = (load_file(str(path / "checkpoints" / "latent_stats.safetensors")) for path in (folder / "run", run))
    for key in ("mean", "var"):
        torch.testing.assert_close(double[key], single[key], rtol=1e-6, atol=1e-6)
    with np.load(folder / "run" / "samples" / "samples.npz") as one, np.load(run / "samples" / "samples.npz") as two:
        assert np.array_equal(one["arr_1"], two["arr_1"])
        assert np.abs(one["arr_0"].astype(int) - two["arr_0"].astype(int)).max() <= 1  # same batches, same seeds
    assert sorted(path.name for path in (run / "samples").iterdir()) == ["grid.png", "samples.npz"]  # shards gone
    one, two = (json.loads((path / "metrics.json").read_text()) for path in (folder / "run", run))
    assert one.keys() == two.keys()  # metric states reduced over ranks: the same values
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-3, abs=1e-3), key


@pytest.mark.slow
def test_autoguidance_uses_the_guide_checkpoint(finished_run, tmp_path):

    folder, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(folder / "run", run)
    online = run / "checkpoints" / "denoiser.safetensors"  # raw weights: another model than the EMA main one
    final = run / "checkpoints" / "denoiser_ema.safetensors"  # the main model itself: guidance then cancels
    text = ASSEMBLY.replace("  guidance: {name: cfg, preset: cfg-tiny}", (
        "  guidance: {name: autoguidance, preset: autoguidance-tiny}\n"
        "  guide: {kind: denoiser, name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2},"
        " checkpoint: 'GUIDE'}"))

    def sample_with(guide: Path) -> np.ndarray:
        (tmp_path / "auto.yaml").write_text(text.replace("GUIDE", str(guide)))
        result = run_assembly(rae_framework.load_assembly(str(tmp_path / "auto.yaml")), run,
                              stages=["train_denoiser", "sample"])
        assert result.skipped == ["train_denoiser"] and result.ran == ["sample"]
        with np.load(run / "samples" / "samples.npz") as guided:
            return guided["arr_0"]

    with_online, with_final = sample_with(online), sample_with(final)
    assert with_online.shape == (10, 16, 16, 3)
    assert not np.array_equal(with_online, with_final)  # the guide's weights change the samples
    (tmp_path / "bad.yaml").write_text(text.replace("GUIDE", str(tmp_path / "missing.safetensors")))
    with pytest.raises(rae_framework.ConfigError, match="components.guide.checkpoint"):
        run_assembly(rae_framework.load_assembly(str(tmp_path / "bad.yaml")), run, stages=["sample"])


@pytest.mark.slow
def test_fresh_reruns_finished_stages_and_a_lone_stage_needs_what_it_reads(finished_run, tmp_path):
    folder, _ = finished_run
    assembly = rae_framework.load_assembly(str(folder / "tiny.yaml"))
    fresh = run_assembly(assembly, folder / "run", resume=False, stages=["latent_stats"])
    assert fresh.ran == ["latent_stats"] and fresh.skipped == []
    with pytest.raises(rae_framework.ConfigError, match="reads the outputs of stage 'train_decoder'"):
        run_assembly(assembly, tmp_path / "empty", stages=["sample"])
    assert not (tmp_path / "empty" / "samples").exists()


@pytest.mark.slow
def test_the_run_saves_its_class_names(finished_run):
    folder, _ = finished_run
    assert json.loads((folder / "run" / "classes.json").read_text()) == [str(digit) for digit in range(10)]
