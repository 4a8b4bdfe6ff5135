"""Torch-free configuration models of the stage-2 denoisers (listing and validation never import torch).

Field names follow the reference implementation's constructor arguments (bytetriper/RAE ``LightningDiT``
and ``DiTwDDTHead``), plus the framework's contract fields ``in_channels`` / ``input_size`` that the
assembly fills in from the encoder's latent shape.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rae_framework.config import ComponentConfig

AttentionBackendName = Literal["sdpa", "xformers", "auto"]


def check_heads(width: int, heads: int, use_rope: bool, where: str) -> None:
    """Width must split into heads; axial RoPE needs a head dim divisible by 4 (two axes x channel pairs)."""
    if width % heads:
        raise ValueError(f"{where}: hidden_size {width} is not divisible by num_heads {heads}")
    if use_rope and (width // heads) % 4:
        raise ValueError(f"{where}: head dim {width // heads} must be divisible by 4 for 2-D RoPE "
                         f"(or set use_rope: false)")


class DiTCommonConfig(ComponentConfig):
    """Settings shared by LightningDiT and DiT-DH."""

    in_channels: int | None = Field(None, ge=1, description="Latent channels C; None = taken from the "
                                                            "encoder's latent shape by the assembly.")
    input_size: int | None = Field(None, ge=1, description="Latent side h (= w); None = taken from the "
                                                           "encoder's latent shape by the assembly.")
    patch_size: int = Field(1, ge=1, description="Side of the latent patch that becomes one token.")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP width / model width (SwiGLU uses 2/3 of it).")
    class_dropout_prob: float = Field(0.1, ge=0.0, lt=1.0,
                                      description="Training-time probability of replacing a label by the "
                                                  "null class (classifier-free guidance). > 0 adds the null row.")
    num_classes: int = Field(1000, ge=1, description="Number of classes; the null label is num_classes.")
    use_qknorm: bool = Field(False, description="Normalise queries and keys per head before attention.")
    use_swiglu: bool = Field(True, description="SwiGLU MLP (else GELU-tanh MLP).")
    use_rope: bool = Field(True, description="2-D axial rotary position embedding (EVA-02 style) on q and k.")
    use_rmsnorm: bool = Field(True, description="RMSNorm (else LayerNorm without affine) in blocks and head.")
    wo_shift: bool = Field(False, description="adaLN without the shift terms (scale and gate only).")
    use_pos_embed: bool = Field(True, description="Add the fixed 2-D sin-cos absolute position embedding.")
    text_dim: int | None = Field(None, ge=1, description="Width of the conditioner's tokens: set, the text path "
                                                          "is on (cross attention over them, no label table); "
                                                          "None = the class path. Derived from the conditioner "
                                                          "by the assembly.")
    pooled_dim: int | None = Field(None, ge=1, description="Width of the conditioner's pooled vector, added to the "
                                                            "time embedding for adaLN (text path); derived from "
                                                            "the conditioner by the assembly.")
    learned_null: bool = Field(False, description="Text path: the null condition's rows (CFG, condition dropout) "
                                                  "use a learned null token and pooled vector instead of the "
                                                  "conditioner's encoding of the empty prompt.")
    attention: AttentionBackendName = Field("sdpa", description="Attention kernel: 'sdpa' (torch), 'xformers' "
                                                                "(CUDA only, error otherwise) or 'auto' "
                                                                "(xformers when usable, else sdpa).")

    @property
    def text_conditioned(self) -> bool:
        """Whether the text path is on (a token or pooled width is set)."""
        return self.text_dim is not None or self.pooled_dim is not None

    @model_validator(mode="after")
    def _check_patch(self) -> DiTCommonConfig:
        if self.input_size is not None and self.input_size % self.patch_size:
            raise ValueError(f"input_size {self.input_size} is not divisible by patch_size {self.patch_size}")
        if self.learned_null and not self.text_conditioned:
            raise ValueError("learned_null is for the text path (text_dim / pooled_dim set); the class path's "
                             "null is the label num_classes")
        return self


class LightningDiTConfig(DiTCommonConfig):
    """LightningDiT: a DiT with SwiGLU, RMSNorm, RoPE and Gaussian-Fourier time embedding."""

    hidden_size: int = Field(1152, ge=4, description="Model width d.")
    depth: int = Field(28, ge=1, description="Number of transformer blocks.")
    num_heads: int = Field(16, ge=1, description="Attention heads.")
    learn_sigma: bool = Field(False, description="Reference compatibility: predict 2C channels and keep "
                                                 "the first C (the variance half is discarded).")

    @property
    def token_width(self) -> int:
        """The widest layer that sees the tokens (the assembly's width-vs-token-dim advice reads it)."""
        return self.hidden_size

    @model_validator(mode="after")
    def _check_width(self) -> LightningDiTConfig:
        check_heads(self.hidden_size, self.num_heads, self.use_rope, "lightning-dit")
        return self


class DiTDHConfig(DiTCommonConfig):
    """DiT^DH: a DiT body followed by a shallow, wide DDT head with per-token adaLN."""

    hidden_size: tuple[int, int] = Field((1152, 2048), description="Widths (body, head).")
    depth: tuple[int, int] = Field((28, 2), description="Block counts (body, head).")
    num_heads: tuple[int, int] = Field((16, 16), description="Attention heads (body, head).")

    @property
    def token_width(self) -> int:
        """The widest layer that sees the tokens: the wide DDT head (the paper's fix for wide tokens)."""
        return max(self.hidden_size)

    @model_validator(mode="after")
    def _check_widths(self) -> DiTDHConfig:
        if min(self.hidden_size) < 4 or min(self.depth) < 1 or min(self.num_heads) < 1:
            raise ValueError("hidden_size >= 4, depth >= 1 and num_heads >= 1 for both body and head")
        for part, width, heads in zip(("body", "head"), self.hidden_size, self.num_heads):
            check_heads(width, heads, self.use_rope, f"dit-dh {part}")
        return self
