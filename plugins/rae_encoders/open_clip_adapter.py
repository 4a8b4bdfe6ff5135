"""The image tower of an open_clip model as a frozen representation encoder.

Two tower kinds: open_clip's own ``VisionTransformer`` (CLS prefix token, ``ln_post`` as final norm) and a
``TimmModel`` wrapping a timm ViT trunk (e.g. the SigLIP2 towers), handled like the timm adapter. The final
norm is applied without its affine parameters; the text tower is discarded.
"""

from __future__ import annotations

import torch
from torch import nn

from rae_framework.errors import ConfigError, WeightsNotFoundError
from rae_encoders.base import FrozenEncoder, standardize
from rae_encoders.configs import OpenClipEncoderConfig
from rae_encoders.timm_adapter import strip_final_norm, weight_file
from rae_encoders.weights import hub_snapshot, resolve_source


def pretrained_file(config: OpenClipEncoderConfig) -> str:
    """A local checkpoint for the configured tag or path (cache first, download only when allowed)."""
    import open_clip

    if config.weights:
        return str(weight_file(resolve_source(config.weights, "", config.allow_download)))
    tag_cfg = open_clip.get_pretrained_cfg(config.model_name, config.pretrained_tag or "")
    hub_id = (tag_cfg or {}).get("hf_hub", "").strip("/")
    if not hub_id:
        raise WeightsNotFoundError(f"open_clip has no hub weights for '{config.model_name}' tag "
                                   f"'{config.pretrained_tag}'; set 'weights' to a local checkpoint file")
    folder = hub_snapshot(hub_id, allow_download=config.allow_download, patterns=["open_clip_*", "*.json"])
    return str(weight_file(folder))


def create_visual(config: OpenClipEncoderConfig) -> nn.Module:
    """The image tower of the configured open_clip model, random or with pretrained weights."""
    import open_clip

    if config.model_cfg is not None:
        if config.pretrained:
            raise ConfigError("open_clip: a custom model_cfg builds random weights only; set pretrained: false")
        return open_clip.CLIP(**config.model_cfg).visual
    pretrained = pretrained_file(config) if config.pretrained else None
    return open_clip.create_model(config.model_name, pretrained=pretrained).visual


class OpenClipEncoder(FrozenEncoder):
    """Normalised pixels ``(B, 3, S, S)`` -> ``(B, P + N, C)`` tokens of an open_clip image tower."""

    Config = OpenClipEncoderConfig

    def __init__(self, config: OpenClipEncoderConfig) -> None:
        super().__init__(config)
        visual = create_visual(config)
        self.trunk = getattr(visual, "trunk", None)  # timm ViT inside a TimmModel tower
        if self.trunk is not None:
            self.norm_eps = strip_final_norm(self.trunk)
            self.num_prefix_tokens = int(self.trunk.num_prefix_tokens)
            self.check_built(int(self.trunk.embed_dim), int(self.trunk.patch_embed.patch_size[0]))
        else:
            self._init_native(visual)
        self.freeze()

    def _init_native(self, visual: nn.Module) -> None:
        """open_clip's own VisionTransformer: keep embeddings + blocks, drop the pooling and projection."""
        self.tower = visual
        self.norm_eps = float(visual.ln_post.eps)
        visual.ln_post, visual.proj = nn.Identity(), None
        self.num_prefix_tokens = 0 if getattr(visual, "class_embedding", None) is None else 1
        self.check_built(int(visual.transformer.width), int(visual.patch_size[0]))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, P + N, C)`` standardised tokens."""
        if self.trunk is not None:
            hidden = self.trunk.forward_features(pixels)
        else:
            hidden = self.tower.transformer(self.tower._embeds(pixels))  # (B, P + N, C)
        return standardize(hidden, self.norm_eps)
