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
