"""LightningDiT: the DiT baseline of the RAE paper (SwiGLU, RMSNorm, 2-D RoPE, Gaussian-Fourier time).

Semantics and state-dict names match the reference ``LightningDiT`` (bytetriper/RAE); ``wo_shift``
(which crashes there) works here. The block and final layer accept a per-sample condition ``(B, D)``
or a per-token condition ``(B, N, D)``, which the DDT head of :mod:`rae_denoisers.dit_dh` uses.

Text path (``text_dim`` / ``pooled_dim`` set, from a text conditioner): no label table; adaLN reads
``t_embedder(t) + pooled_proj(pooled)``, and every block gains a cross attention over the projected prompt
tokens (key padding mask) between its self-attention and its MLP, zero-initialised (PixArt-alpha's layout). With
the text path off, modules and state dict are exactly the class path's.
"""

from __future__ import annotations

import torch
from torch import nn

from rae_framework.conditioning import Conditioning
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Denoiser
from rae_framework.nn import unpatchify

from rae_denoisers.attention import AttentionBackend, CrossAttention, SelfAttention
from rae_denoisers.configs import DiTCommonConfig, LightningDiTConfig
from rae_denoisers.layers import (
    AxialRoPE2D,
    GaussianFourierEmbedder,
    LabelEmbedder,
    PatchEmbed,
    TextEmbedder,
    frozen_pos_embed,
    make_mlp,
    make_norm,
    modulate,
)


def per_token(condition: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` -> ``(B, 1, D)`` (broadcast over tokens); ``(B, N, D)`` is returned as is."""
    return condition.unsqueeze(1) if condition.dim() == 2 else condition


def latent_geometry(config: DiTCommonConfig) -> tuple[int, int]:
    """``(in_channels, input_size)``, which the assembly must have filled in by construction time."""
    if config.in_channels is None or config.input_size is None:
        raise ConfigError("denoiser needs in_channels and input_size (the latent shape C and h); set them "
                          "or build it inside an assembly, which takes them from the encoder")
    return config.in_channels, config.input_size


TextTokens = tuple[torch.Tensor, torch.Tensor]  # projected prompt tokens (B, L, D) and their mask (B, L) bool


def zero_init_cross_attention(blocks: nn.ModuleList) -> None:
    """Cross attention starts as a no-op (zero output projection), so a text block starts as a plain block."""
    for block in blocks:
        if hasattr(block, "cross_attn"):
            nn.init.zeros_(block.cross_attn.proj.weight)
            nn.init.zeros_(block.cross_attn.proj.bias)


def condition_inputs(model: Denoiser, te: torch.Tensor, y: torch.Tensor | Conditioning
                     ) -> tuple[torch.Tensor, TextTokens | None]:
    """``(adaLN condition (B, D), text tokens or None)`` from the time embedding ``te (B, D)`` and ``y``: labels
    through ``y_embedder`` on the class path, a text Conditioning through ``text_embedder`` on the text path."""
    if not model.config.text_conditioned:
        labels = y.labels if isinstance(y, Conditioning) else y
        if labels is None:
            raise ConfigError(f"{type(model).__name__} is class-conditioned (no text_dim/pooled_dim): it needs "
                              "class labels, got a Conditioning without labels")
        return te + model.y_embedder(labels), None
    if not isinstance(y, Conditioning):
        raise ConfigError(f"{type(model).__name__} is text-conditioned: give a Conditioning from a text "
                          "conditioner, not class labels")
    pooled, tokens, mask = model.text_embedder(y)
    condition = te if pooled is None else te + pooled.to(te.dtype)
    return condition, None if tokens is None else (tokens, mask)


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation (shift/scale/gate, or scale/gate)."""

    def __init__(self, dim: int, num_heads: int, config: DiTCommonConfig, backend: AttentionBackend,
                 cross: bool = False) -> None:
        super().__init__()
        self.wo_shift = config.wo_shift
        self.norm1 = make_norm(dim, config.use_rmsnorm)
        self.attn = SelfAttention(dim, num_heads, backend, use_qknorm=config.use_qknorm,
                                  use_rmsnorm=config.use_rmsnorm)
        if cross:  # the text path only: class-path blocks keep exactly the reference's modules
            self.norm_cross = make_norm(dim, config.use_rmsnorm)
            self.cross_attn = CrossAttention(dim, num_heads, backend, use_qknorm=config.use_qknorm,
                                             use_rmsnorm=config.use_rmsnorm)
        self.norm2 = make_norm(dim, config.use_rmsnorm)
        self.mlp = make_mlp(dim, config.mlp_ratio, config.use_swiglu)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, (4 if self.wo_shift else 6) * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: AxialRoPE2D | None,
                text: TextTokens | None = None) -> torch.Tensor:
        """``x (B, N, D)``, condition ``c (B, D)`` or ``(B, N, D)``, ``text``: projected prompt tokens
        ``(B, L, D)`` and their mask ``(B, L)`` for a block with cross attention -> ``(B, N, D)``."""
        chunks = self.adaLN_modulation(per_token(c)).chunk(4 if self.wo_shift else 6, dim=-1)
        if self.wo_shift:
            (scale_msa, gate_msa, scale_mlp, gate_mlp), shift_msa, shift_mlp = chunks, None, None
        else:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = chunks
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope)
        if text is not None and hasattr(self, "cross_attn"):
            x = x + self.cross_attn(self.norm_cross(x), *text)
        return x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """Norm, adaLN shift/scale (no gate), then ``Linear(D, p*p*C)``."""

    def __init__(self, dim: int, out_features: int, use_rmsnorm: bool) -> None:
        super().__init__()
        self.norm_final = make_norm(dim, use_rmsnorm)
        self.linear = nn.Linear(dim, out_features)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x (B, N, D)``, ``c (B, D)`` or ``(B, N, D)`` -> ``(B, N, p*p*C)``."""
        shift, scale = self.adaLN_modulation(per_token(c)).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def zero_init_modulation(blocks: nn.ModuleList, final_layer: FinalLayer) -> None:
    """adaLN-Zero: every block starts as identity and the model predicts zero."""
    for module in [*(block.adaLN_modulation[-1] for block in blocks), final_layer.adaLN_modulation[-1],
                   final_layer.linear]:
        nn.init.zeros_(module.weight)
        nn.init.zeros_(module.bias)


def init_embedders(model: nn.Module, patch_embeds: list[PatchEmbed]) -> None:
    """The reference init of embeddings: patch convs like Linear (xavier), labels and time MLP N(0, 0.02)."""
    for embed in patch_embeds:
        weight = embed.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(embed.proj.bias)
    if hasattr(model, "y_embedder"):
        nn.init.normal_(model.y_embedder.embedding_table.weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[2].weight, std=0.02)


class LightningDiT(Denoiser):
    """DiT over a ``(B, C, h, w)`` latent; predicts the flow velocity with the same shape."""

    Config = LightningDiTConfig

    def __init__(self, config: LightningDiTConfig) -> None:
        super().__init__(config)
        self.in_channels, self.input_size = latent_geometry(config)
        self.num_classes = config.num_classes
        width, grid = config.hidden_size, self.input_size // config.patch_size
        self.out_channels = self.in_channels * (2 if config.learn_sigma else 1)
        self.attention_backend = AttentionBackend(config.attention)
        self.x_embedder = PatchEmbed(self.in_channels, width, config.patch_size)
        self.t_embedder = GaussianFourierEmbedder(width)
        self.text_dim, self.pooled_dim = config.text_dim, config.pooled_dim
        if config.text_conditioned:
            self.text_embedder = TextEmbedder(config.text_dim, config.pooled_dim, width, config.learned_null)
        else:
            self.y_embedder = LabelEmbedder(config.num_classes, width, config.class_dropout_prob)
        if config.use_pos_embed:
            self.pos_embed = frozen_pos_embed(width, grid)  # (1, N, D)
        self.feat_rope = AxialRoPE2D(width // config.num_heads, grid) if config.use_rope else None
        cross = config.text_dim is not None
        self.blocks = nn.ModuleList(DiTBlock(width, config.num_heads, config, self.attention_backend, cross)
                                    for _ in range(config.depth))
        self.final_layer = FinalLayer(width, config.patch_size ** 2 * self.out_channels, config.use_rmsnorm)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The reference init: xavier Linears, then embedders, then adaLN-Zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        init_embedders(self, [self.x_embedder])
        zero_init_modulation(self.blocks, self.final_layer)
        zero_init_cross_attention(self.blocks)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | Conditioning) -> torch.Tensor:
        """``x (B, C, h, w)``, ``t (B,)``, ``y``: labels ``(B,)`` or a Conditioning -> velocity ``(B, C, h, w)``."""
        tokens = self.x_embedder(x)  # (B, N, D)
        if self.config.use_pos_embed:
            tokens = tokens + self.pos_embed
        c, text = condition_inputs(self, self.t_embedder(t), y)  # (B, D), prompt tokens or None
        for block in self.blocks:
            tokens = block(tokens, c, self.feat_rope, text)
        out = unpatchify(self.final_layer(tokens, c), patch_size=self.config.patch_size,
                         channels=self.out_channels)
        return out[:, : self.in_channels]  # (B, C, h, w); drops the learn_sigma half
