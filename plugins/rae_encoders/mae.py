"""The MAE ViT encoder (transformers ViTMAEModel) as a frozen representation encoder.

Masking is off and the token order is preserved: ViTMAEModel shuffles tokens by ``argsort(noise)`` even with
mask ratio 0, so it is given the ordered ``noise = arange(N)``. The CLS token is the one prefix token; the
final LayerNorm is applied without its affine parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from rae_encoders.base import FrozenEncoder, standardize
from rae_encoders.configs import MAEConfig
from rae_encoders.weights import build_hf_model

IGNORED_KEYS = r"^layernorm\.(weight|bias)$|^decoder\."


class MAEEncoder(FrozenEncoder):
    """Normalised pixels ``(B, 3, S, S)`` -> ``(B, 1 + (S/p)^2, C)`` tokens, in row-major patch order."""

    Config = MAEConfig

    def __init__(self, config: MAEConfig) -> None:
        super().__init__(config)
        from transformers import ViTMAEConfig, ViTMAEModel

        self.model = build_hf_model(ViTMAEModel, ViTMAEConfig, config, IGNORED_KEYS)
        self.model.layernorm = nn.Identity()  # applied below without affine
        self.norm_eps = float(self.model.config.layer_norm_eps)
        self.num_prefix_tokens = 1
        self.interpolate = config.input_size != self.model.config.image_size
        self.check_built(self.model.config.hidden_size, self.model.config.patch_size)
        self.freeze()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 1 + N, C)`` standardised tokens."""
        count = (pixels.shape[-2] // self.patch_size) * (pixels.shape[-1] // self.patch_size)
        noise = torch.arange(count, device=pixels.device, dtype=torch.float32).expand(pixels.shape[0], count)
        hidden = self.model(pixel_values=pixels, noise=noise, interpolate_pos_encoding=self.interpolate)
        return standardize(hidden.last_hidden_state, self.norm_eps)  # (B, 1 + N, C)
