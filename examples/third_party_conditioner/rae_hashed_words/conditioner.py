"""The ``hashed-words`` conditioner: a vocabulary-free bag of words, frozen, in a few lines of torch."""

import zlib

import torch

from rae_framework.conditioning import Conditioning
from rae_framework.interfaces import Conditioner
from rae_hashed_words.configs import HashedWordsConfig

EMPTY = "<empty>"  # the empty prompt is one token, so every row has something to attend to


class HashedWordsConditioner(Conditioner):
    """Prompts -> ``Conditioning(pooled (B, dim), tokens (B, L, dim), mask (B, L))``; null = the empty prompt."""

    Config = HashedWordsConfig
    input_kind = "text"

    def __init__(self, config: HashedWordsConfig) -> None:
        super().__init__(config)
        self.token_dim = self.pooled_dim = config.dim
        generator = torch.Generator().manual_seed(config.seed)
        self.register_buffer("table", torch.randn(config.buckets, config.dim, generator=generator))  # frozen

    def _ids(self, prompt: str) -> list[int]:
        words = prompt.lower().split()[: self.config.max_words] or [EMPTY]
        return [zlib.crc32(word.encode()) % self.config.buckets for word in words]

    def encode(self, conditions) -> Conditioning:
        """B prompts -> their Conditioning (padding rows zero, mask False)."""
        ids = [self._ids(prompt) for prompt in conditions]
        length = max(len(row) for row in ids)
        mask = torch.tensor([[k < len(row) for k in range(length)] for row in ids], device=self.table.device)
        index = torch.tensor([row + [0] * (length - len(row)) for row in ids], device=self.table.device)
        tokens = self.table[index] * mask[..., None]  # (B, L, dim)
        pooled = tokens.sum(1) / mask.sum(1, keepdim=True)  # (B, dim)
        return Conditioning(pooled=pooled, tokens=tokens, mask=mask)

    def null(self, batch_size: int) -> Conditioning:
        """The empty prompt, ``batch_size`` times, flagged null."""
        return self.encode([""] * batch_size).with_null(torch.ones(batch_size, dtype=torch.bool,
                                                                   device=self.table.device))
