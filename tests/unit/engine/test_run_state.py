"""Stage input hashes (which sections each stage depends on), records, and stale-checkpoint handling."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from rae_framework.engine.distributed import DistContext
from rae_framework.engine.logging import RunLogger
from rae_framework.engine.run_state import RunState, StageRecord
from rae_framework.session import Session
from rae_framework.stage import Stages

SESSION = Session()  # the registered stages' specs decide what each stage hashes

RESOLVED = {
    "name": "x", "seed": 0,
    "components": {role: {"kind": role, "name": role, "params": {"width": 1}}
                   for role in ("encoder", "decoder", "denoiser", "schedule", "sampler")},
    "autoencoder": {"noise_tau": 0.8}, "data": {"source": "digits"},
    "stages": {"train_decoder": {"steps": 1}, "latent_stats": {}, "train_denoiser": {"steps": 2},
               "sample": {"per_class": 1}, "evaluate": {"metrics": []}},
}


class FakeAssembly:
    """Just what RunState reads: ``resolved()``, a seed, the session and (no configured) stages."""

    def __init__(self, resolved):
        self._resolved, self.seed = resolved, resolved["seed"]
        self.session, self.stages = SESSION, Stages()

    def resolved(self):
        return copy.deepcopy(self._resolved)


def state_for(tmp_path: Path, change=None) -> RunState:
    resolved = copy.deepcopy(RESOLVED)
    if change:
        change(resolved)
    return RunState(tmp_path, FakeAssembly(resolved), DistContext())


def test_hash_follows_only_the_sections_a_stage_reads(tmp_path):
    base = state_for(tmp_path)

    def sampler_steps(resolved):
        resolved["components"]["sampler"]["params"]["width"] = 2

    changed = state_for(tmp_path, sampler_steps)
    assert changed.input_hash("sample") != base.input_hash("sample")
    for stage in ("train_decoder", "latent_stats", "train_denoiser"):
        assert changed.input_hash(stage) == base.input_hash(stage)


def test_encoding_stages_ignore_the_decoder_and_its_training_noise(tmp_path):
    """latent_stats and train_denoiser only encode (eval mode): a decoder or noise_tau change (Finding 3's
    sweep) leaves their hashes, so a sweep shares one denoiser; the decoder's own stage and sampling rerun."""
    base = state_for(tmp_path)

    def decoder_width(resolved):
        resolved["components"]["decoder"]["params"]["width"] = 2

    def no_noise(resolved):
        resolved["autoencoder"]["noise_tau"] = 0.0

    def latent_eps(resolved):
        resolved["autoencoder"]["latent_eps"] = 1e-3

    for change in (decoder_width, no_noise):
        changed = state_for(tmp_path, change)
        for stage in ("latent_stats", "train_denoiser"):
            assert changed.input_hash(stage) == base.input_hash(stage), (change.__name__, stage)
        for stage in ("train_decoder", "sample"):
            assert changed.input_hash(stage) != base.input_hash(stage), (change.__name__, stage)
    for stage in ("latent_stats", "train_denoiser"):  # the rest of the autoencoder section still counts
        assert state_for(tmp_path, latent_eps).input_hash(stage) != base.input_hash(stage)


def test_upstream_outputs_enter_the_hash(tmp_path):
    state = state_for(tmp_path)
    before = state.input_hash("train_denoiser")
    output = tmp_path / "checkpoints" / "latent_stats.safetensors"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"stats v1")
    state.write_record(StageRecord.create("latent_stats", "k", [output], tmp_path))
    first = state.input_hash("train_denoiser")
    output.write_bytes(b"stats v2")
    assert not state.outputs_exist(state.record("latent_stats"))  # hash mismatch: stage must rerun
    state.write_record(StageRecord.create("latent_stats", "k", [output], tmp_path))
    assert len({before, first, state.input_hash("train_denoiser")}) == 3


def test_stale_checkpoints_are_set_aside(tmp_path):
    state, logger = state_for(tmp_path), RunLogger(tmp_path, tensorboard=False)
    state.invalidate_stale_checkpoints("train_denoiser", "key-a", logger)
    (state.checkpoint_dir("train_denoiser") / "step_00000001").mkdir()
    state.invalidate_stale_checkpoints("train_denoiser", "key-a", logger)  # same inputs: kept
    assert (state.checkpoint_dir("train_denoiser") / "step_00000001").is_dir()
    state.invalidate_stale_checkpoints("train_denoiser", "key-b", logger)  # new inputs: moved away
    assert not (state.checkpoint_dir("train_denoiser") / "step_00000001").exists()
    assert len(list(state.checkpoints.glob("train_denoiser.stale-key-a*"))) == 1
    (state.checkpoint_dir("train_denoiser") / "step_00000002").mkdir()
    state.invalidate_stale_checkpoints("train_denoiser", "key-b", logger, fresh=True)  # resume off
    assert not list(state.checkpoint_dir("train_denoiser").glob("step_*"))
    logger.close()


def test_component_builds_are_seeded_per_role(tmp_path):
    class Assembly(FakeAssembly):
        def build(self, role, session=None):
            return torch.rand(3)

    first = RunState(tmp_path, Assembly(RESOLVED), DistContext())
    second = RunState(tmp_path, Assembly(RESOLVED), DistContext())
    second.component("decoder")  # another build order
    assert torch.equal(first.component("encoder"), second.component("encoder"))
    assert not torch.equal(first.component("encoder"), first.component("decoder"))
