"""The SigLIP2 vision tower (fixed-resolution SigLIP architecture, transformers SiglipVisionModel).

SigLIP has no CLS or register tokens: every output token is a patch token (``num_prefix_tokens = 0``). The
attention-pooling head is not built; the final (post) LayerNorm is applied without its affine parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from rae_encoders.base import FrozenEncoder, standardize
from rae_encoders.configs import Siglip2Config
from rae_encoders.weights import build_hf_model

# Full SigLIP checkpoints also hold the text tower, the logit scale/bias and the pooling head.
IGNORED_KEYS = r"post_layernorm\.(weight|bias)$|^text_model\.|^logit_|head\."


class Siglip2Encoder(FrozenEncoder):
    """Normalised pixels ``(B, 3, S, S)`` -> ``(B, (S/p)^2, C)`` tokens."""

    Config = Siglip2Config

    def __init__(self, config: Siglip2Config) -> None:
        super().__init__(config)
        from transformers import SiglipVisionConfig, SiglipVisionModel

        self.model = build_hf_model(SiglipVisionModel, SiglipVisionConfig, config, IGNORED_KEYS)
        tower = getattr(self.model, "vision_model", self.model)  # transformers 4.x wraps the tower
        tower.post_layernorm = nn.Identity()  # applied below without affine
        self.norm_eps = float(self.model.config.layer_norm_eps)
        self.num_prefix_tokens = 0
        self.interpolate = config.input_size != self.model.config.image_size
        self.check_built(self.model.config.hidden_size, self.model.config.patch_size)
        self.freeze()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, N, C)`` standardised tokens."""
        hidden = self.model(pixel_values=pixels, interpolate_pos_encoding=self.interpolate).last_hidden_state
        return standardize(hidden, self.norm_eps)
