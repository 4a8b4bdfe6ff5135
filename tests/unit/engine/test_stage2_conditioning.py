"""Stage 2 with a conditioner: class-label is the label path bit for bit; a text conditioner trains a text
denoiser on captions, with condition dropout from the same draws."""

from __future__ import annotations

import pytest
import torch

from rae_conditioners.class_label import ClassLabelConditioner
from rae_conditioners.configs import ClassLabelConditionerConfig, TextConditionerConfig
from rae_conditioners.text import TextConditioner
from rae_denoisers.configs import LightningDiTConfig
from rae_denoisers.lightning_dit import LightningDiT
from rae_framework.data.captions import DIGIT_WORDS, ClassCaptions
from rae_framework.engine import TrainingJob
from rae_framework.engine.logging import RunLogger
from rae_framework.errors import ConfigError
from rae_stages.train_denoiser import train_denoiser

from doubles import LinearSchedule
from test_stage2 import ToyLatents, make_stage

QWEN = {"model_type": "qwen2", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 258, "max_position_embeddings": 32}
DIT = {"in_channels": 4, "input_size": 4, "hidden_size": 32, "depth": 1, "num_heads": 2, "num_classes": 10}


def train(tmp_path, denoiser, stage, **conditioning):
    logger = RunLogger(tmp_path / "run", tensorboard=False)
    try:
        job = TrainingJob("train_denoiser", tmp_path / "ckpt", logger, seed=0)
        return train_denoiser(denoiser, LinearSchedule(), ToyLatents(), stage, job, **conditioning)
    finally:
        logger.close()


def test_class_label_conditioner_trains_the_same_bits_as_labels(tmp_path):
    runs = []
    for index, conditioner in enumerate([None, ClassLabelConditioner(ClassLabelConditionerConfig(num_classes=10))]):
        torch.manual_seed(0)
        state = train(tmp_path / str(index), LightningDiT(LightningDiTConfig(**DIT)), make_stage(steps=3),
                      conditioner=conditioner)
        runs.append(state.model.state_dict())
    assert all(torch.equal(runs[0][key], runs[1][key]) for key in runs[0])


def test_a_text_conditioner_trains_a_text_denoiser_on_captions(tmp_path):
    conditioner = TextConditioner(TextConditionerConfig(architecture=QWEN, tokenizer="bytes"))
    torch.manual_seed(0)
    denoiser = LightningDiT(LightningDiTConfig(**DIT, text_dim=16, pooled_dim=16, learned_null=True))
    before = {key: value.clone() for key, value in denoiser.state_dict().items()}
    state = train(tmp_path, denoiser, make_stage(steps=3, class_dropout=0.5), conditioner=conditioner,
                  captions=ClassCaptions(DIGIT_WORDS))
    after = state.model.state_dict()
    assert not torch.equal(before["text_embedder.null_token"], after["text_embedder.null_token"])  # drops happened
    assert not torch.equal(before["blocks.0.cross_attn.proj.weight"], after["blocks.0.cross_attn.proj.weight"])


def test_a_text_run_refuses_model_side_label_dropout_and_a_class_denoiser(tmp_path):
    conditioner = TextConditioner(TextConditionerConfig(architecture=QWEN, tokenizer="bytes"))
    captions = ClassCaptions(DIGIT_WORDS)
    with pytest.raises(ConfigError, match="label_dropout"):
        train(tmp_path, LightningDiT(LightningDiTConfig(**DIT, text_dim=16, pooled_dim=16)),
              make_stage(label_dropout="model"), conditioner=conditioner, captions=captions)
    with pytest.raises(ConfigError, match="no text path"):
        train(tmp_path, LightningDiT(LightningDiTConfig(**DIT)), make_stage(), conditioner=conditioner,
              captions=captions)


def test_class_captions():
    assert ClassCaptions(DIGIT_WORDS).captions([(0, False)], torch.tensor([7])) == ["a seven"]
    with pytest.raises(ConfigError, match="name"):
        ClassCaptions(DIGIT_WORDS, template="a digit")
