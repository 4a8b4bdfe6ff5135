"""The paper's DINO discriminator (reference ``DinoDisc``, after StyleGAN-T's projected discriminator).

A frozen DINO ViT (timm, ViT-S/8 by default) sees the image resized to 224 and ImageNet-normalised; the
patch tokens of the last block and of each ``key_depths`` block each feed a trainable head
``[SNConv1d(k=1) -> LocalBN -> LeakyReLU] -> residual [SNConv1d(k=ks, circular) -> LocalBN -> LeakyReLU]
-> SNConv1d(C -> 1)``; the per-token logits of all heads are concatenated. As in the reference, the
backbone's MLPs use tanh-approximated GELU and the key part of its qkv bias is zeroed (a no-op for softmax).
The backbone gets no gradients, the input images do (the generator loss backpropagates through it).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rae_framework import ensure_torchvision_importable
from rae_framework.errors import ConfigError, WeightsNotFoundError
from rae_framework.interfaces import Discriminator
from rae_gan.configs import DinoDiscriminatorConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LocalBatchNorm(nn.Module):
    """The reference's local batch norm at virtual batch 1: per sample and channel over tokens, no running stats."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, L)`` -> ``(B, C, L)``, computed in float32."""
        x = x.float()
        mean = x.mean(dim=2, keepdim=True)  # (B, C, 1)
        var = x.var(dim=2, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight.view(1, -1, 1) + self.bias.view(1, -1, 1)


class Residual(nn.Module):
    """``(f(x) + x) / sqrt(2)``."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn  # the reference's attribute name, so that its checkpoints' keys match

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual branch with variance-preserving scaling."""
        return (self.fn(x) + x) / math.sqrt(2)


def _conv(config: DinoDiscriminatorConfig, in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, padding_mode="circular")
    if config.spectral_norm:
        conv = nn.utils.spectral_norm(conv, n_power_iterations=1, eps=1e-12, dim=0)
    return conv


def _block(config: DinoDiscriminatorConfig, channels: int, kernel_size: int) -> nn.Sequential:
    norm = (LocalBatchNorm(channels, config.norm_eps) if config.norm_type == "bn"
            else nn.GroupNorm(32, channels, eps=config.norm_eps))
    return nn.Sequential(_conv(config, channels, channels, kernel_size), norm, nn.LeakyReLU(0.2))


def make_head(config: DinoDiscriminatorConfig, channels: int) -> nn.Sequential:
    """One trainable head: ``(B, C, L)`` tokens -> ``(B, 1, L)`` logits."""
    return nn.Sequential(_block(config, channels, 1), Residual(_block(config, channels, config.kernel_size)),
                         _conv(config, channels, 1, 1))


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state.get("model", state))


def _cached_hub_weights(model_name: str) -> Path:
    """The backbone's safetensors in the Hugging Face cache (timm's hub layout ``timm/<name>``), or a
    :class:`WeightsNotFoundError` (checked before timm is even imported)."""
    from huggingface_hub import try_to_load_from_cache

    hub_id = f"timm/{model_name}"
    cached = try_to_load_from_cache(hub_id, "model.safetensors")
    if not isinstance(cached, str):
        raise WeightsNotFoundError(
            f"DINO discriminator backbone '{model_name}' is not in the Hugging Face cache: run "
            f"`huggingface-cli download {hub_id} model.safetensors` where a network is available, or set "
            f"`weights` to a local file (e.g. dino_deitsmall8_pretrain.pth from "
            f"https://dl.fbaipublicfiles.com/dino/). For tests, use pretrained: false.")
    return Path(cached)


def _weights_path(config: DinoDiscriminatorConfig) -> Path:
    if config.weights is None:
        return _cached_hub_weights(config.timm_model)
    if not Path(config.weights).is_file():
        raise WeightsNotFoundError(f"DINO discriminator weights not found: {config.weights}")
    return Path(config.weights)


def build_backbone(config: DinoDiscriminatorConfig) -> nn.Module:
    """The frozen timm ViT (random or with its DINO weights), k-bias zeroed, in eval mode."""
    path = _weights_path(config) if config.pretrained else None  # fail fast: before importing timm
    ensure_torchvision_importable()
    import timm

    overrides = {key: value for key in ("embed_dim", "depth", "num_heads", "patch_size")
                 if (value := getattr(config, key)) is not None}
    backbone = timm.create_model(config.timm_model, pretrained=False, num_classes=0, act_layer="gelu_tanh",
                                 img_size=config.input_size, **overrides)
    if path is not None:
        backbone.load_state_dict(_state_dict_from_file(path), strict=True)
    _zero_key_bias(backbone)
    return backbone.requires_grad_(False).eval()


@torch.no_grad()
def _zero_key_bias(backbone: nn.Module) -> None:
    for block in backbone.blocks:
        bias = block.attn.qkv.bias  # (3C,) = [q | k | v]
        if bias is not None:
            width = bias.numel() // 3
            bias[width:2 * width].zero_()


def _drop_backbone_state(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [key for key in state_dict if key.startswith(f"{prefix}backbone.")]:
        del state_dict[key]


def _keep_backbone_state(module: nn.Module, state_dict: dict, prefix: str, *_: object) -> None:
    for name, value in module.backbone.state_dict().items():
        state_dict.setdefault(f"{prefix}backbone.{name}", value)


class DinoDiscriminator(Discriminator):
    """Frozen DINO ViT features -> one trainable head per tapped block -> concatenated token logits.

    ``state_dict()`` holds the heads only (``heads.*``, the reference's key names; its DINO lives outside
    the module tree too): the frozen backbone is rebuilt from the config, and ``load_state_dict`` keeps it.
    """

    Config = DinoDiscriminatorConfig

    def __init__(self, config: DinoDiscriminatorConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config)
        depth = len(self.backbone.blocks)
        if any(index >= depth for index in config.key_depths):
            raise ConfigError(f"key_depths {config.key_depths} exceed the backbone's {depth} blocks")
        self.taps = [depth - 1, *config.key_depths]  # last block first, as the reference
        self.heads = nn.ModuleList(make_head(config, self.backbone.embed_dim) for _ in self.taps)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_state_dict_post_hook(_drop_backbone_state)
        self.register_load_state_dict_pre_hook(_keep_backbone_state)

    def train(self, mode: bool = True) -> DinoDiscriminator:
        """Heads follow ``mode``; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The heads' parameters (what the discriminator optimiser should update)."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> per tap ``(B, C, L)`` patch tokens (prefix tokens dropped)."""
        size = self.config.input_size
        x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std  # (B, 3, size, size)
        tokens = self.backbone.forward_intermediates(x, indices=sorted(set(self.taps)), norm=False,
                                                     output_fmt="NLC", intermediates_only=True)
        by_block = dict(zip(sorted(set(self.taps)), tokens))  # block -> (B, L, C)
        return [by_block[index].transpose(1, 2) for index in self.taps]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> logits ``(B, len(taps) * L)``."""
        logits = [head(tokens).flatten(1) for head, tokens in zip(self.heads, self.features(images))]
        return torch.cat(logits, dim=1)
