"""Any timm ViT as a frozen representation encoder, by model name.

Tokens are ``forward_features`` with the final norm replaced by a parameter-free standardisation (the norm's
eps kept); ``num_prefix_tokens`` (CLS + registers) comes from the model. Pretrained weights resolve to a local
file (given path, HF cache or hub download) and are loaded through timm's ``pretrained_cfg_overlay``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rae_framework.errors import ConfigError, WeightsNotFoundError
from rae_encoders.base import FrozenEncoder, standardize
from rae_encoders.configs import TimmEncoderConfig
from rae_encoders.weights import resolve_source


def strip_final_norm(vit: nn.Module) -> float:
    """Replace a timm ViT's final ``norm`` by identity; return its eps (applied later without affine)."""
    norm = getattr(vit, "norm", None)
    if not isinstance(norm, nn.LayerNorm):
        raise ConfigError(f"{type(vit).__name__} has no final LayerNorm 'norm'; only ViT-style models are supported")
    vit.norm = nn.Identity()
    return float(norm.eps)


def weight_file(source: Path) -> Path:
    """The weight file of a local folder or file (safetensors preferred)."""
    if source.is_file():
        return source
    for pattern in ("*.safetensors", "*.bin", "*.pth"):
        found = sorted(source.glob(pattern))
        if found:
            return found[0]
    raise WeightsNotFoundError(f"no .safetensors/.bin/.pth weight file in {source}")


def timm_hub_id(model_name: str) -> str:
    """The hub repo timm would download ``model_name``'s default weights from."""
    import timm

    pretrained_cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(pretrained_cfg, "hf_hub_id", None)
    if not hub_id:
        raise WeightsNotFoundError(f"timm has no hub weights for '{model_name}'; set 'weights' to a local file")
    return hub_id


def create_timm_vit(config: TimmEncoderConfig) -> nn.Module:
    """``timm.create_model`` with random or resolved local pretrained weights."""
    import timm

    if not config.pretrained:
        return timm.create_model(config.model_name, pretrained=False, **config.model_kwargs)
    default = "" if config.weights else timm_hub_id(config.model_name)
    file = weight_file(resolve_source(config.weights, default, config.allow_download))
    return timm.create_model(config.model_name, pretrained=True, pretrained_cfg_overlay={"file": str(file)},
                             **config.model_kwargs)


def check_derived(config: TimmEncoderConfig, embed_dim: int, patch_size: int) -> None:
    """The width and patch the config derived (from 'dim'/'patch', model_kwargs or the model name) must be the
    built model's; the advice names the settings that fix it."""
    fixes = [f"{field}: {built}" for field, built, derived in (("dim", embed_dim, config.token_dim),
                                                                  ("patch", patch_size, config.patch_size))
             if built != derived]
    if fixes:
        raise ConfigError(f"timm model '{config.model_name}' has embed_dim {embed_dim} and patch {patch_size}, but "
                          f"the encoder's params give {config.token_dim} and {config.patch_size} (from 'dim'/'patch', "
                          f"model_kwargs or the model name); set {', '.join(fixes)} in its params")


class TimmEncoder(FrozenEncoder):
    """Normalised pixels ``(B, 3, S, S)`` -> ``(B, num_prefix_tokens + N, C)`` tokens of a timm ViT."""

    Config = TimmEncoderConfig

    def __init__(self, config: TimmEncoderConfig) -> None:
        super().__init__(config)
        self.model = create_timm_vit(config)
        self.norm_eps = strip_final_norm(self.model)
        self.num_prefix_tokens = int(self.model.num_prefix_tokens)
        check_derived(config, int(self.model.embed_dim), int(self.model.patch_embed.patch_size[0]))
        self.check_built(int(self.model.embed_dim), int(self.model.patch_embed.patch_size[0]))
        self.freeze()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, P + N, C)`` standardised tokens."""
        return standardize(self.model.forward_features(pixels), self.norm_eps)
