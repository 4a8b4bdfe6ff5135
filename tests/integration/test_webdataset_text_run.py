"""A tiny text-to-image run from webdataset tar shards through the CLI: captions from the samples, the latent
cache keyed by the shards, a resumed run ending bit for bit where the uninterrupted one did, and two processes
under torchrun training bit for bit what one process trains with the same micro-batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rae_framework.testing.digit_shards import write_digit_shards

ASSEMBLY = """
name: wds-text-tiny
seed: 0
components:
  encoder: {{name: mae, preset: mae-tiny}}
  decoder: {{name: vit, preset: vit-tiny}}
  conditioner: {{name: text, preset: text-qwen2-tiny, params: {{padding: max_length, max_length: 16}}}}
  denoiser: {{name: dit-dh, preset: dit-dh-text-tiny}}
  schedule: {{name: shifted-flow}}
  sampler: {{name: euler, preset: euler-tiny}}
  guidance: {{name: cfg, params: {{scale: 3.0}}}}
data: {{source: webdataset, shards: "{shards}", image_size: 16, horizontal_flip: true}}
stages:
  train_decoder: {{steps: 1, batch_size: 8}}
  latent_stats: {{batch_size: 64}}
  train_denoiser: {{steps: 3, batch_size: 8, grad_accumulation: 2, checkpoint_every: 1}}
  sample: {{prompts: ["a seven", "a one"], per_class: 1, batch_size: 2}}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GLOO_SOCKET_IFNAME": "lo"}
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]


def rae(folder, *args: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *launcher, "-m", "rae_framework", *args], cwd=folder, env=ENV,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wds")
    shards = write_digit_shards(folder / "shards", count=48, per_shard=16)
    (folder / "t2i.yaml").write_text(ASSEMBLY.format(shards=shards))
    done = rae(folder, "run", "t2i.yaml", "--out", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.mark.slow
def test_the_run_trains_on_the_shards_and_samples_the_prompts(finished):
    with np.load(finished / "run" / "samples" / "samples.npz") as samples:
        assert samples["arr_0"].shape == (2, 16, 16, 3) and samples["arr_1"].tolist() == [0, 1]
    assert len(list((finished / "run" / "latent_cache").iterdir())) == 1


def final_weights(run) -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_file(str(run / "checkpoints" / f"{name}.safetensors")) for name in ("denoiser", "denoiser_ema")}


@pytest.mark.slow
def test_a_run_resumed_from_step_2_ends_bit_for_bit_as_the_whole_run(finished):
    run = finished / "resumed"
    shutil.copytree(finished / "run", run)
    (run / "stages" / "train_denoiser" / "stage_state.json").unlink()
    shutil.rmtree(run / "checkpoints" / "train_denoiser" / "step_00000003")  # as if stopped after step 2
    done = rae(finished, "run", "t2i.yaml", "--out", "resumed", "--stage", "train_denoiser")
    assert done.returncode == 0 and "resumed from step 2" in done.stderr, done.stderr[-3000:]
    whole, resumed = final_weights(finished / "run"), final_weights(run)
    assert all(torch.equal(resumed[name][key], whole[name][key]) for name in whole for key in whole[name])


@pytest.mark.slow
def test_two_processes_train_what_one_trains_and_a_changed_shard_is_a_new_cache(finished):
    """One process with 2 micro-batches of 4 rows and 2 processes with 1 each compute the same micro-batches
    and add the same two gradients: with the prompts padded to max_length (so the encoding does not depend on
    which rows share a call) the weights are torch.equal. (Padding to the longest prompt, they differ by 2e-11.)"""
    run = finished / "run2"
    shutil.copytree(finished / "run", run)
    (run / "stages" / "train_denoiser" / "stage_state.json").unlink()
    shutil.rmtree(run / "checkpoints" / "train_denoiser")
    first = sorted(shard for shard in (finished / "shards").glob("*.tar"))[0]
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 1))  # same bytes, new identity
    done = rae(finished, "run", "t2i.yaml", "--out", "run2", "--stage", "train_denoiser",
               "--set", "stages.train_denoiser.grad_accumulation=1", launcher=tuple(TORCHRUN))
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((run / "latent_cache").iterdir())) == 2  # the shard's new mtime keys a new cache
    one, two = final_weights(finished / "run"), final_weights(run)
    assert all(torch.equal(two[name][key], one[name][key]) for name in one for key in one[name])
