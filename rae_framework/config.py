"""Base class for component configurations.

Kept free of torch so that ``list``, ``describe`` and ``validate`` never import it: a plugin puts its
``Config`` classes in a torch-free module and registers them by ``"module:Class"`` reference.
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field


class ComponentConfig(BaseModel):
    """Typed, frozen parameters of one component.

    Subclasses declare every field with ``Field(..., description=...)``. Unknown keys are an error
    (``extra="forbid"``): a misspelled parameter never passes silently, and neither does a NaN or an
    infinity (``.nan``, ``.inf`` in YAML) in a float field (``allow_inf_nan=False``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)


class Component:
    """Mixin for every component: holds the validated config it was built from."""

    Config: ClassVar[type[ComponentConfig]]

    def __init__(self, config: ComponentConfig) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} expects {self.Config.__name__}, got {type(config).__name__}")
        self.config = config


class AutoencoderConfig(ComponentConfig):
    """Settings of the RAE composition (encoder + decoder + latent normalisation), the ``autoencoder`` section."""

    noise_tau: float = Field(0.0, ge=0.0, description="Training-time latent noise: z + tau * U(0,1) * N(0, I), "
                                                      "one sigma per sample, train mode only (paper: 0.8).")
    latent_eps: float = Field(1e-5, gt=0.0, description="eps in (z - mean) / sqrt(var + eps).")
    statistics: str | None = Field(None, description="Path of a latent statistics file (safetensors, or the "
                                                     "reference's .pt with 'mean' and/or 'var'); None = computed "
                                                     "by the latent_stats stage or identity.")


class OptimizerConfig(ComponentConfig):
    """AdamW with warm-up and decay."""

    lr: float = Field(2e-4, gt=0.0, description="Peak learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    hold_steps: int = Field(0, ge=0, description="Steps at the peak learning rate after warm-up, before the "
                                                 "decay starts (the reference holds 2e-4 for 40 epochs).")
    decay: Literal["constant", "cosine", "linear"] = Field("constant", description="Decay after warm-up "
                                                                                  "and hold.")
    min_lr: float = Field(0.0, ge=0.0, description="Final learning rate of the decay.")
    grad_clip: float | None = Field(1.0, description="Max global gradient norm; None = no clipping.")
    implementation: Literal["auto", "fused", "foreach"] = Field(
        "auto", description="AdamW kernel: 'fused' (one kernel per step; CPU and CUDA among others; about 5x "
                            "faster than foreach for DiT^DH-S on CPU), 'foreach' (torch's multi-tensor path, for "
                            "devices without the fused kernel), 'auto' = fused where the parameters' device and "
                            "dtype have it, else foreach. Both are deterministic run to run (bit-exact resume). The "
                            "reference trains with fused AdamW (reference: src/utils/optim_utils.py:L39).")


class LatentShape(NamedTuple):
    """``(C, h, w)`` of the RAE's latents: the one value type of the latent shape (a tuple, so it unpacks,
    compares and prints like one). The assembly derives it from the encoder's Config; the built encoder, the
    RAE and the denoisers report the same type."""

    channels: int
    height: int
    width: int

    def __repr__(self) -> str:  # messages show ``(768, 16, 16)``
        return repr(tuple(self))

    @property
    def tokens(self) -> int:
        """Latent positions ``h * w`` (the decoder's patches, the denoiser's tokens)."""
        return self.height * self.width

    @property
    def numel(self) -> int:
        """Latent dimensions ``C * h * w`` (what the time shift is derived from)."""
        return self.channels * self.height * self.width


def latent_shape_of(encoder_config: ComponentConfig) -> LatentShape | None:
    """``(token_dim, grid, grid)``: the latent shape an encoder config implies (torch-free), or None when the
    config does not expose the integer properties ``token_dim`` and ``grid_size`` (tokens per side at its
    input size). The one derivation of the latent shape: the assembly and the built encoder both use it."""
    token_dim, grid = getattr(encoder_config, "token_dim", None), getattr(encoder_config, "grid_size", None)
    if not isinstance(token_dim, int) or not isinstance(grid, int):
        return None
    return LatentShape(token_dim, grid, grid)
