"""The text conditioner over real (tiny, random) transformers towers and real tokenizers, offline."""

from __future__ import annotations

import pytest
import torch

from rae_conditioners.configs import TextConditionerConfig
from rae_conditioners.text import TextConditioner
from rae_framework.errors import ConfigError

QWEN = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 258, "max_position_embeddings": 64}
T5 = {"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 2, "d_kv": 16, "vocab_size": 258}


def build(**params) -> TextConditioner:
    return TextConditioner(TextConditionerConfig(**{"architecture": QWEN, "tokenizer": "bytes", **params}))


def test_mask_marks_the_real_tokens_and_padding_is_zero() -> None:
    cond = build().encode(["ab", "abcd"])
    assert cond.mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]  # bytes + </s>
    assert torch.all(cond.tokens[0, 3:] == 0)


def test_padding_does_not_change_a_prompt_encoding() -> None:
    conditioner = build()
    alone, padded = conditioner.encode(["ab"]), conditioner.encode(["ab", "a much longer prompt"])
    torch.testing.assert_close(padded.tokens[0, :3], alone.tokens[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded.pooled[0], alone.pooled[0], rtol=1e-5, atol=1e-5)


def test_max_length_truncates() -> None:
    cond = build(max_length=6).encode(["a prompt far longer than six bytes"])
    assert cond.tokens.shape[1] == 6 and bool(cond.mask.all())


def test_max_length_defaults_to_the_model_positions() -> None:
    assert build().max_length == 64


def test_null_condition_is_the_empty_prompt() -> None:
    conditioner = build()
    null = conditioner.null(3)
    assert null.null.tolist() == [True] * 3
    torch.testing.assert_close(null.tokens[1], conditioner.encode([""]).tokens[0])


def test_frozen_and_in_eval_mode_even_when_trained() -> None:
    conditioner = build().train()
    assert not conditioner.model.training
    assert all(not parameter.requires_grad for parameter in conditioner.parameters())


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = build().encode(["x"]), build().encode(["x"]), build(seed=1).encode(["x"])
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


def test_layer_selects_a_hidden_state() -> None:
    last, first = build().encode(["ab"]), build(layer=1).encode(["ab"])
    assert not torch.allclose(last.tokens, first.tokens)


def test_t5_encoder_and_a_saved_word_level_tokenizer(tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "a": 2, "seven": 3, "one": 4}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>").save_pretrained(tmp_path)
    conditioner = TextConditioner(TextConditionerConfig(architecture=T5, family="t5", tokenizer=str(tmp_path),
                                                        max_length=8))
    cond = conditioner.encode(["a seven", "one"])
    assert cond.tokens.shape == (2, 2, 32) and cond.mask.tolist() == [[True, True], [True, False]]


def test_prompts_must_be_strings_and_the_source_unique() -> None:
    with pytest.raises(ConfigError, match="prompts"):
        build().encode([1, 2])
    with pytest.raises(ValueError, match="exactly one"):
        TextConditionerConfig(tokenizer="bytes")
    with pytest.raises(ValueError, match="tokenizer"):
        TextConditionerConfig(architecture=QWEN)


def test_rae_list_conditioner_shows_both(capsys) -> None:
    from rae_framework import cli

    assert cli.main(["list", "conditioner"]) == 0
    out = capsys.readouterr().out
    assert "class-label" in out and "text" in out


def test_max_length_padding_makes_a_row_independent_of_its_batch() -> None:
    """With ``padding: max_length`` a rank's half of a batch encodes (and denoises) bit for bit as the rows of
    the whole batch do; with 'longest' the halves take other lengths (here 3 vs 21 tokens)."""
    from rae_framework.session import Session

    prompts = ["ab", "cd", "a much longer prompt", "ef"]
    longest = build()
    assert longest.encode(prompts[:2]).tokens.shape[1] != longest.encode(prompts).tokens.shape[1]
    conditioner = build(padding="max_length", max_length=24)
    whole, half = conditioner.encode(prompts), conditioner.encode(prompts[:2])
    assert whole.tokens.shape[1] == half.tokens.shape[1] == 24
    assert torch.equal(whole.tokens[:2], half.tokens) and torch.equal(whole.pooled[:2], half.pooled)
    denoiser = Session().build("denoiser", "dit-dh", preset="dit-dh-text-tiny").eval()
    x, t = torch.randn(4, 8, 4, 4, generator=torch.Generator().manual_seed(0)), torch.full((4,), 0.5)
    with torch.no_grad():
        assert torch.equal(denoiser(x, t, whole)[:2], denoiser(x[:2], t[:2], half))
