"""Torch-free configuration of the representation encoders (imported by ``rae list`` without torch).

Every encoder config exposes ``token_dim`` and ``grid_size`` (tokens per side at ``input_size``) as
properties, from which an assembly derives the latent shape ``(token_dim, grid, grid)``.
"""

from __future__ import annotations

import difflib
import re
from abc import abstractmethod
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from rae_framework.config import ComponentConfig
from rae_encoders.hf_fields import FIELDS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EncoderConfig(ComponentConfig):
    """Fields shared by all encoders: input geometry, pixel normalisation and the weight source."""

    input_size: int = Field(224, gt=0, description="Side of the square image the encoder sees (the RAE resizes "
                                                   "to it): 224 for 256-px images, 448 for 512-px.")
    image_mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="Per-channel pixel mean.")
    image_std: tuple[float, float, float] = Field(IMAGENET_STD, description="Per-channel pixel std.")
    pretrained: bool = Field(True, description="Load pretrained weights; false = random weights of the same "
                                               "architecture (tests, offline).")
    weights: str | None = Field(None, description="Weight source: a local directory (save_pretrained layout) or "
                                                  "file (.safetensors), or a hub id; None = the default hub id.")
    allow_download: bool = Field(True, description="Fetch missing weights from the hub; false (or "
                                                   "HF_HUB_OFFLINE=1) uses only local files and the HF cache.")

    @property
    @abstractmethod
    def token_dim(self) -> int:
        """Width C of the output tokens."""

    @property
    @abstractmethod
    def patch_size(self) -> int:
        """Encoder patch side."""

    @property
    def grid_size(self) -> int:
        """Tokens per side at ``input_size``."""
        return self.input_size // self.patch_size


class HFEncoderConfig(EncoderConfig):
    """An encoder built with transformers: a size from a table, plus HF config overrides."""

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {}
    COMMON: ClassVar[dict[str, Any]] = {}
    RUNTIME: ClassVar[dict[str, Any]] = {}  # HF config values the encoder always needs (also with weights)
    HF_CONFIG: ClassVar[str] = ""  # the transformers config class built from architecture()

    size: str = Field("b", description="Model size (a key of the architecture table).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="HF config fields replacing the size's "
                                      "values (e.g. a tiny hidden_size/num_hidden_layers); unknown keys are errors.")
    attn_implementation: Literal["sdpa", "eager"] = Field("sdpa", description="transformers attention kernel.")

    def architecture(self) -> dict[str, Any]:
        """HF config kwargs: the common values, the size's values, then the overrides."""
        return {**self.COMMON, **self.SIZES[self.size], **self.overrides}

    def hf_config_name(self) -> str:
        """The name of the transformers config class this encoder builds."""
        return self.HF_CONFIG

    @model_validator(mode="after")
    def _known_overrides(self) -> HFEncoderConfig:
        """A misspelled key in ``overrides`` is an error now, not when the model is built."""
        known = FIELDS.get(self.hf_config_name(), frozenset())
        unknown = sorted(set(self.overrides) - known) if known else []
        if unknown:
            hints = [f"'{key}'" + "".join(f" (did you mean '{close}'?)" for close in
                                          difflib.get_close_matches(key, sorted(known), n=1)) for key in unknown]
            raise ValueError(f"overrides: unknown {self.hf_config_name()} field(s) {', '.join(hints)}")
        return self

    @property
    def token_dim(self) -> int:
        """Width C of the output tokens (the HF hidden_size)."""
        return int(self.architecture()["hidden_size"])

    @property
    def patch_size(self) -> int:
        """Encoder patch side (the HF patch_size)."""
        return int(self.architecture()["patch_size"])

    @abstractmethod
    def default_hub_id(self) -> str:
        """The hub repository of the released weights of this size."""


def _layers(hidden: int, layers: int, heads: int, **extra: Any) -> dict[str, Any]:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, **extra}


class Dinov2Config(HFEncoderConfig):
    """DINOv2 (with or without registers). Tokens: [CLS, registers..., patches]; the RAE drops the prefix."""

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "s": _layers(384, 12, 6), "b": _layers(768, 12, 12), "l": _layers(1024, 24, 16),
        "g": _layers(1536, 40, 24, use_swiglu_ffn=True),
    }
    COMMON: ClassVar[dict[str, Any]] = {"patch_size": 14, "image_size": 518}
    HUB_NAMES: ClassVar[dict[str, str]] = {"s": "small", "b": "base", "l": "large", "g": "giant"}
    HF_CONFIG: ClassVar[str] = "Dinov2WithRegistersConfig"

    size: Literal["s", "b", "l", "g"] = Field("b", description="ViT-S/B/L/G.")
    registers: bool = Field(True, description="Dinov2WithRegisters (4 register tokens) or plain Dinov2.")

    def architecture(self) -> dict[str, Any]:
        """HF config kwargs; the register count is part of the architecture when registers are on."""
        registers = {"num_register_tokens": 4} if self.registers else {}
        return {**self.COMMON, **self.SIZES[self.size], **registers, **self.overrides}

    def hf_config_name(self) -> str:
        """``Dinov2WithRegistersConfig``, or ``Dinov2Config`` without registers."""
        return self.HF_CONFIG if self.registers else "Dinov2Config"

    def default_hub_id(self) -> str:
        """``facebook/dinov2-with-registers-base`` etc."""
        infix = "-with-registers" if self.registers else ""
        return f"facebook/dinov2{infix}-{self.HUB_NAMES[self.size]}"


class Siglip2Config(HFEncoderConfig):
    """SigLIP2 (fixed-resolution SigLIP vision tower), all tokens kept (no CLS)."""

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "b": _layers(768, 12, 12, intermediate_size=3072), "l": _layers(1024, 24, 16, intermediate_size=4096),
        "so400m": _layers(1152, 27, 16, intermediate_size=4304),
    }
    COMMON: ClassVar[dict[str, Any]] = {"patch_size": 16}
    RUNTIME: ClassVar[dict[str, Any]] = {"vision_use_head": False}
    HUB_NAMES: ClassVar[dict[str, str]] = {"b": "base", "l": "large", "so400m": "so400m"}
    HF_CONFIG: ClassVar[str] = "SiglipVisionConfig"

    size: Literal["b", "l", "so400m"] = Field("b", description="ViT-B / L / So400m.")
    input_size: int = Field(256, gt=0, description="Square input side (also the released resolution).")
    image_mean: tuple[float, float, float] = Field((0.5, 0.5, 0.5), description="Per-channel pixel mean.")
    image_std: tuple[float, float, float] = Field((0.5, 0.5, 0.5), description="Per-channel pixel std.")

    def architecture(self) -> dict[str, Any]:
        """HF SiglipVisionConfig kwargs (image_size = input_size unless overridden)."""
        return {**self.COMMON, "image_size": self.input_size, **self.SIZES[self.size], **self.overrides}

    def default_hub_id(self) -> str:
        """``google/siglip2-base-patch16-256`` etc."""
        return f"google/siglip2-{self.HUB_NAMES[self.size]}-patch{self.patch_size}-{self.input_size}"


class MAEConfig(HFEncoderConfig):
    """MAE ViT encoder with masking off and token order kept; the CLS token is dropped."""

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "b": _layers(768, 12, 12), "l": _layers(1024, 24, 16), "h": _layers(1280, 32, 16, patch_size=14),
    }
    COMMON: ClassVar[dict[str, Any]] = {"patch_size": 16, "image_size": 224}
    RUNTIME: ClassVar[dict[str, Any]] = {"mask_ratio": 0.0}
    HUB_NAMES: ClassVar[dict[str, str]] = {"b": "base", "l": "large", "h": "huge"}
    HF_CONFIG: ClassVar[str] = "ViTMAEConfig"

    size: Literal["b", "l", "h"] = Field("b", description="ViT-B / L / H.")

    def default_hub_id(self) -> str:
        """``facebook/vit-mae-base`` etc."""
        return f"facebook/vit-mae-{self.HUB_NAMES[self.size]}"


_SIZE_WORDS = {"tiny": 192, "small": 384, "medium": 512, "base": 768, "large": 1024, "huge": 1280,
               "so400m": 1152, "giant": 1536}


def _from_name(pattern: str, name: str, field: str, kwarg: str) -> int:
    """A size read from a timm model name; ``field``/``kwarg``: the settings that give it explicitly."""
    match = re.search(pattern, name)
    if match is None:
        raise ValueError(f"cannot derive '{field}' from model name '{name}'; set '{field}' (or "
                         f"model_kwargs.{kwarg})")
    return int(_SIZE_WORDS.get(match.group(1), match.group(1)))


class TimmEncoderConfig(EncoderConfig):
    """Any timm ViT (``vit_*``) as an encoder, by model name."""

    model_name: str = Field(..., description="timm model name, e.g. 'vit_base_patch14_reg4_dinov2'.")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra timm.create_model kwargs "
                                         "(e.g. img_size, embed_dim, depth for tiny configs).")
    dim: int | None = Field(None, gt=0, description="Token width; None = model_kwargs.embed_dim or the size word "
                                                    "of the model name (tiny/small/base/large/...).")
    patch: int | None = Field(None, gt=0, description="Patch side; None = model_kwargs.patch_size or the "
                                                      "'patchNN' of the model name.")

    @model_validator(mode="after")
    def _derivable(self) -> TimmEncoderConfig:
        """token_dim and patch_size must be known without building the model."""
        _ = (self.token_dim, self.patch_size)
        return self

    @property
    def token_dim(self) -> int:
        """Width C of the output tokens."""
        if self.dim is not None:
            return self.dim
        return int(self.model_kwargs.get("embed_dim") or _from_name(r"_(tiny|small|medium|base|large|huge|giant"
                                                                    r"|so400m)", self.model_name, "dim", "embed_dim"))

    @property
    def patch_size(self) -> int:
        """Encoder patch side."""
        if self.patch is not None:
            return self.patch
        return int(self.model_kwargs.get("patch_size")
                   or _from_name(r"patch(\d+)", self.model_name, "patch", "patch_size"))


class OpenClipEncoderConfig(EncoderConfig):
    """The image tower of an open_clip model (native ViT or timm trunk) as an encoder."""

    model_name: str = Field("ViT-B-16", description="open_clip model name, e.g. 'ViT-B-16-SigLIP2'.")
    pretrained_tag: str | None = Field(None, description="open_clip pretrained tag (e.g. 'webli'); 'weights' "
                                                         "may name a local checkpoint file instead.")
    model_cfg: dict[str, Any] | None = Field(None, description="A full open_clip model config (embed_dim, "
                                             "vision_cfg, text_cfg) used instead of the built-in one of "
                                             "model_name (custom or tiny towers).")
    dim: int = Field(768, gt=0, description="Token width of the image tower (checked when built).")
    patch: int = Field(16, gt=0, description="Patch side of the image tower (checked when built).")

    @property
    def token_dim(self) -> int:
        """Width C of the output tokens."""
        return self.dim

    @property
    def patch_size(self) -> int:
        """Encoder patch side."""
        return self.patch
