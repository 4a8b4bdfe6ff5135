"""DiT^DH: a DiT body plus a shallow, wide DDT head with per-token adaLN (the RAE paper's denoiser).

Forward pass (reference ``DiTwDDTHead`` semantics, bytetriper/RAE):

1. ``te = t_embedder(t)``, ``c = SiLU(te + y_embedder(y))``, both at the body width;
2. body: ``s = s_embedder(x) (+ pos_embed)``, then the body blocks with the per-sample condition ``c``
   and the body RoPE;
3. ``s = s_projector(SiLU(te[:, None] + s))``: one condition vector per token at the head width;
4. head: the noisy input is embedded again (``x_embedder``, no absolute position), then the head blocks
   with the per-token condition ``s`` and the head RoPE;
5. final layer with per-token shift/scale from ``s``, then unpatchify.

Unlike the reference, ``patch_size > 1``, ``use_rope=False`` and ``wo_shift=True`` work.

Text path (``text_dim`` / ``pooled_dim`` set): ``c = SiLU(te + pooled_proj(pooled))`` replaces the label term,
and the body blocks gain cross attention over the projected prompt tokens (the head sees the prompt through
``s``, as it sees the class). Off, modules and state dict are exactly the class path's.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from rae_framework.conditioning import Conditioning
from rae_framework.interfaces import Denoiser
from rae_framework.nn import unpatchify

from rae_denoisers.attention import AttentionBackend
from rae_denoisers.configs import DiTDHConfig
from rae_denoisers.layers import (
    AxialRoPE2D,
    GaussianFourierEmbedder,
    LabelEmbedder,
    PatchEmbed,
    TextEmbedder,
    frozen_pos_embed,
)
from rae_denoisers.lightning_dit import (
    DiTBlock,
    FinalLayer,
    condition_inputs,
    init_embedders,
    latent_geometry,
    zero_init_cross_attention,
    zero_init_modulation,
)


class DiTDH(Denoiser):
    """DiT body ``(hidden_size[0], depth[0])`` + DDT head ``(hidden_size[1], depth[1])`` over a latent."""

    Config = DiTDHConfig

    def __init__(self, config: DiTDHConfig) -> None:
        super().__init__(config)
        self.in_channels, self.input_size = latent_geometry(config)
        self.num_classes = config.num_classes
        (body, head), p = config.hidden_size, config.patch_size
        grid = self.input_size // p
        self.attention_backend = AttentionBackend(config.attention)
        self.x_embedder = PatchEmbed(self.in_channels, head, p)
        self.s_embedder = PatchEmbed(self.in_channels, body, p)
        self.s_projector = nn.Linear(body, head) if body != head else nn.Identity()
        self.t_embedder = GaussianFourierEmbedder(body)
        self.text_dim, self.pooled_dim = config.text_dim, config.pooled_dim
        if config.text_conditioned:
            self.text_embedder = TextEmbedder(config.text_dim, config.pooled_dim, body, config.learned_null)
        else:
            self.y_embedder = LabelEmbedder(config.num_classes, body, config.class_dropout_prob)
        self.final_layer = FinalLayer(head, p * p * self.in_channels, config.use_rmsnorm)
        if config.use_pos_embed:
            self.pos_embed = frozen_pos_embed(body, grid)  # (1, N, body)
        self.enc_feat_rope, self.dec_feat_rope = self._ropes(grid) if config.use_rope else (None, None)
        widths = [body] * config.depth[0] + [head] * config.depth[1]
        heads = [config.num_heads[0]] * config.depth[0] + [config.num_heads[1]] * config.depth[1]
        cross = [config.text_dim is not None] * config.depth[0] + [False] * config.depth[1]  # body blocks only
        self.blocks = nn.ModuleList(DiTBlock(width, count, config, self.attention_backend, with_cross)
                                    for width, count, with_cross in zip(widths, heads, cross))
        self.initialize_weights()

    def _ropes(self, grid: int) -> tuple[AxialRoPE2D, AxialRoPE2D]:
        (body, head), (body_heads, head_heads) = self.config.hidden_size, self.config.num_heads
        return AxialRoPE2D(body // body_heads, grid), AxialRoPE2D(head // head_heads, grid)

    def initialize_weights(self) -> None:
        """The reference init: default Linears, xavier patch convs, N(0, 0.02) embeddings, adaLN-Zero."""
        init_embedders(self, [self.x_embedder, self.s_embedder])
        zero_init_modulation(self.blocks, self.final_layer)
        zero_init_cross_attention(self.blocks)

    def encode_condition(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | Conditioning) -> torch.Tensor:
        """Body pass: ``x (B, C, h, w)`` -> per-token head condition ``s (B, N, head width)``."""
        te = self.t_embedder(t)  # (B, body)
        c, text = condition_inputs(self, te, y)  # (B, body), prompt tokens or None
        c = F.silu(c)
        s = self.s_embedder(x)  # (B, N, body)
        if self.config.use_pos_embed:
            s = s + self.pos_embed
        for block in self.blocks[: self.config.depth[0]]:
            s = block(s, c, self.enc_feat_rope, text)
        return self.s_projector(F.silu(te[:, None, :] + s))  # (B, N, head)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | Conditioning) -> torch.Tensor:
        """``x (B, C, h, w)``, ``t (B,)``, ``y``: labels ``(B,)`` or a Conditioning -> velocity ``(B, C, h, w)``."""
        s = self.encode_condition(x, t, y)  # (B, N, head)
        tokens = self.x_embedder(x)  # (B, N, head)
        for block in self.blocks[self.config.depth[0]:]:
            tokens = block(tokens, s, self.dec_feat_rope)
        out = self.final_layer(tokens, s)  # (B, N, p*p*C)
        return unpatchify(out, patch_size=self.config.patch_size, channels=self.in_channels)
