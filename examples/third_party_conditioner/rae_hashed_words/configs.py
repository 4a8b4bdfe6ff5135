"""Torch-free Config of the conditioner (rae-framework lists and validates it without importing torch).

``token_dim`` and ``pooled_dim`` are what the assembly reads to derive the denoiser's ``text_dim`` and
``pooled_dim``; ``input_kind`` says the conditioner takes prompts.
"""

from typing import ClassVar

from pydantic import Field

from rae_framework.config import ComponentConfig


class HashedWordsConfig(ComponentConfig):
    """Each word of a prompt -> a fixed random vector chosen by its hash; pooled = their mean."""

    input_kind: ClassVar[str] = "text"

    dim: int = Field(32, gt=0, description="Width of the word vectors (tokens and pooled vector).")
    buckets: int = Field(1024, gt=1, description="Size of the hashed vocabulary.")
    max_words: int = Field(16, gt=0, description="Words kept per prompt (more are truncated).")
    seed: int = Field(0, description="Seed of the fixed random word vectors.")

    @property
    def token_dim(self) -> int:
        """Dt of the tokens."""
        return self.dim

    @property
    def pooled_dim(self) -> int:
        """Dp of the pooled vector."""
        return self.dim
