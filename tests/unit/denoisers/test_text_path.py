"""The denoisers' text path: shapes, key padding, the learned null, the class path untouched, CFG with text."""

from __future__ import annotations

import pytest
import torch

from rae_denoisers.configs import DiTDHConfig, LightningDiTConfig
from rae_denoisers.dit_dh import DiTDH
from rae_denoisers.lightning_dit import LightningDiT
from rae_flow.configs import CFGConfig
from rae_flow.guidance import ClassifierFreeGuidance
from rae_framework.conditioning import Conditioning
from rae_framework.errors import ConfigError

COMMON = {"in_channels": 8, "input_size": 4, "text_dim": 12, "pooled_dim": 10}


def models(**extra):
    torch.manual_seed(0)
    return [LightningDiT(LightningDiTConfig(hidden_size=32, depth=2, num_heads=2, **COMMON, **extra)),
            DiTDH(DiTDHConfig(hidden_size=(32, 48), depth=(1, 1), num_heads=(2, 2), **COMMON, **extra))]


def wake(model):
    """Non-zero cross attention and adaLN (zero-initialised), so that the text changes the output."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def condition(length: int = 5, valid: int = 3, batch: int = 2, seed: int = 0) -> Conditioning:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, length, 12, generator=generator)
    mask = (torch.arange(length) < valid).expand(batch, length).clone()
    return Conditioning(pooled=torch.randn(batch, 10, generator=generator), tokens=tokens * mask[..., None], mask=mask)


X, T = torch.randn(2, 8, 4, 4), torch.tensor([0.3, 0.8])


@pytest.mark.parametrize("index", [0, 1])
def test_shapes_and_the_text_matters(index) -> None:
    model = wake(models()[index])
    with torch.no_grad():
        out, other = model(X, T, condition()), model(X, T, condition(seed=1))
    assert out.shape == X.shape and not torch.allclose(out, other)


@pytest.mark.parametrize("index", [0, 1])
def test_padding_tokens_do_not_change_the_output(index) -> None:
    model, short = wake(models()[index]), condition(length=3, valid=3)
    garbage = torch.randn(2, 4, 12)  # whatever sits under a False mask is ignored
    long = Conditioning(pooled=short.pooled, tokens=torch.cat([short.tokens, garbage], 1),
                        mask=torch.cat([short.mask, torch.zeros(2, 4, dtype=torch.bool)], 1))
    with torch.no_grad():
        torch.testing.assert_close(model(X, T, long), model(X, T, short), rtol=1e-5, atol=1e-5)


def test_a_row_without_tokens_is_finite() -> None:
    model, cond = wake(models()[0]), condition()
    empty = Conditioning(pooled=cond.pooled, tokens=cond.tokens, mask=torch.zeros_like(cond.mask))
    with torch.no_grad():
        assert torch.isfinite(model(X, T, empty)).all()


def test_learned_null_replaces_the_null_rows() -> None:
    model = wake(models(learned_null=True)[1])
    cond = condition()
    flagged = cond.with_null(torch.tensor([True, False]))
    with torch.no_grad():
        out, plain = model(X, T, flagged), model(X, T, cond)
    assert not torch.allclose(out[0], plain[0]) and torch.allclose(out[1], plain[1])


def test_text_path_off_keeps_the_class_state_dict() -> None:
    plain = LightningDiT(LightningDiTConfig(in_channels=8, input_size=4, hidden_size=32, depth=2, num_heads=2))
    text = models()[0]
    assert "y_embedder.embedding_table.weight" in plain.state_dict()
    assert not any("cross_attn" in key or "text_embedder" in key for key in plain.state_dict())
    assert any("cross_attn" in key for key in text.state_dict()) and not hasattr(text, "y_embedder")


def test_labels_and_conditioning_of_labels_agree_and_paths_refuse_each_other() -> None:
    torch.manual_seed(0)
    plain = LightningDiT(LightningDiTConfig(in_channels=8, input_size=4, hidden_size=32, depth=2,
                                            num_heads=2)).eval()
    labels = torch.tensor([1, 3])
    assert torch.equal(plain(X, T, labels), plain(X, T, Conditioning(labels=labels)))
    with pytest.raises(ConfigError, match="text-conditioned"):
        models()[0](X, T, labels)
    with pytest.raises(ConfigError, match="class-conditioned"):
        plain(X, T, condition())


def test_cfg_with_text_batches_cond_and_null() -> None:
    model = wake(models()[0])
    cond, null = condition(length=5, valid=4), condition(length=1, valid=1, seed=3)
    null = null.with_null(torch.ones(2, dtype=torch.bool))
    with torch.no_grad():
        guided = ClassifierFreeGuidance(CFGConfig(scale=3.0)).velocity(model, cond, null=null)(X, T)
        v_c, v_u = model(X, T, cond), model(X, T, null)
    torch.testing.assert_close(guided, v_u + 3.0 * (v_c - v_u), rtol=1e-4, atol=1e-5)


def test_cfg_with_text_needs_the_null_condition() -> None:
    with pytest.raises(ConfigError, match="null condition"):
        ClassifierFreeGuidance(CFGConfig(scale=3.0)).velocity(models()[0], condition())(X, T)


def test_autoguidance_with_text_runs_the_guide_on_the_guided_rows() -> None:
    from rae_flow.configs import AutoguidanceConfig
    from rae_flow.guidance import Autoguidance

    main, guide = wake(models()[0]), wake(models()[0])
    cond = condition()
    t = torch.tensor([0.3, 0.95])
    with torch.no_grad():
        out = Autoguidance(AutoguidanceConfig(scale=2.0, t_max=0.9)).velocity(main, cond, guide=guide)(X, t)
        v_m, v_g = main(X, t, cond), guide(X[:1], t[:1], cond.rows(slice(0, 1)))
    torch.testing.assert_close(out[0], (v_g + 2.0 * (v_m[:1] - v_g))[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1], v_m[1])


def test_xformers_key_padding_bias_is_aligned_and_masks() -> None:
    from rae_denoisers.attention import key_padding_bias

    mask = torch.tensor([[True, True, False], [True, False, False]])
    bias = key_padding_bias(mask, queries=4, heads=2, dtype=torch.float32)
    assert bias.shape == (2, 2, 4, 3) and bias.stride(-2) % 8 == 0
    assert torch.equal(torch.isinf(bias[:, 0, 0]), ~mask) and bias[0, 1, 3, 0] == 0


def test_conditioning_cat_pads_and_where_swaps_rows() -> None:
    long, short = condition(length=5, valid=4), condition(length=2, valid=1, seed=2)
    both = long.cat(short)
    assert both.tokens.shape == (4, 5, 12) and both.mask[2:, 2:].sum() == 0
    swapped = long.where(torch.tensor([False, True]), short)
    assert swapped.null.tolist() == [False, True] and torch.equal(swapped.pooled[1], short.pooled[1])
