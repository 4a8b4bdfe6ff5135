"""DINOv2 (with or without registers) as a frozen representation encoder, built with transformers.

Output: all tokens ``[CLS, registers..., patches (row-major)]`` after the final LayerNorm *without* its affine
parameters (a parameter-free standardisation with the config's eps, the paper's encoder normalisation).
The number of prefix tokens is 1 + ``num_register_tokens`` from the model config (the reference hard-codes 5).
Position embeddings are resized by transformers (bicubic, antialias, explicit target size) when the token grid
differs from the pretraining grid, as the reference's transformers 4.56 does.
"""

from __future__ import annotations

import torch
from torch import nn

from rae_encoders.base import FrozenEncoder, standardize
from rae_encoders.configs import Dinov2Config
from rae_encoders.weights import build_hf_model

# The final LayerNorm's affine is discarded (absent from the reference's checkpoints).
IGNORED_KEYS = r"^layernorm\.(weight|bias)$"


class Dinov2Encoder(FrozenEncoder):
    """Normalised pixels ``(B, 3, S, S)`` -> ``(B, 1 + registers + (S/14)^2, C)`` tokens."""

    Config = Dinov2Config

    def __init__(self, config: Dinov2Config) -> None:
        super().__init__(config)
        from transformers import Dinov2Config as HFDinov2Config
        from transformers import Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

        classes = (Dinov2WithRegistersModel, Dinov2WithRegistersConfig) if config.registers \
            else (Dinov2Model, HFDinov2Config)
        self.model = build_hf_model(*classes, config, IGNORED_KEYS)
        self.model.layernorm = nn.Identity()  # applied below without affine
        self.norm_eps = float(self.model.config.layer_norm_eps)
        self.num_prefix_tokens = 1 + int(getattr(self.model.config, "num_register_tokens", 0))
        self.check_built(self.model.config.hidden_size, self.model.config.patch_size)
        self.freeze()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, P + N, C)`` standardised tokens."""
        hidden = self.model(pixel_values=pixels).last_hidden_state  # (B, P + N, C), before the final norm
        return standardize(hidden, self.norm_eps)
