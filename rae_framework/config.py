"""Base class for component configurations.

Kept free of torch so that ``list``, ``describe`` and ``validate`` never import it: a plugin puts its
``Config`` classes in a torch-free module and registers them by ``"module:Class"`` reference.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ComponentConfig(BaseModel):
    """Typed, frozen parameters of one component.

    Subclasses declare every field with ``Field(..., description=...)``. Unknown keys are an error
    (``extra="forbid"``): a misspelled parameter never passes silently.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class AutoencoderConfig(ComponentConfig):
    """Settings of the RAE composition (encoder + decoder + latent normalisation), the ``autoencoder`` section."""

    noise_tau: float = Field(0.0, ge=0.0, description="Training-time latent noise: z + tau * U(0,1) * N(0, I), "
                                                      "one sigma per sample, train mode only (paper: 0.8).")
    latent_eps: float = Field(1e-5, gt=0.0, description="eps in (z - mean) / sqrt(var + eps).")
    statistics: str | None = Field(None, description="Path of a latent statistics file (safetensors, or the "
                                                     "reference's .pt with 'mean' and/or 'var'); None = computed "
                                                     "by the latent_stats stage or identity.")


def latent_shape_of(encoder_config: ComponentConfig) -> tuple[int, int, int]:
    """``(token_dim, grid, grid)``: the latent shape an encoder config implies (torch-free).

    Encoder configs expose the properties ``token_dim`` and ``grid_size`` (tokens per side at their input size).
    """
    return (encoder_config.token_dim, encoder_config.grid_size, encoder_config.grid_size)


def fill_decoder_params(decoder_params: dict, encoder_config: ComponentConfig) -> dict:
    """The decoder params with ``token_dim`` and ``num_patches`` derived from the encoder where absent."""
    channels, grid, _ = latent_shape_of(encoder_config)
    filled = dict(decoder_params)
    if filled.get("token_dim") is None:
        filled["token_dim"] = channels
    if filled.get("num_patches") is None:
        filled["num_patches"] = grid * grid
    return filled
