"""``text``: a frozen transformers text model turns prompts into tokens, a padding mask and a pooled vector.

How Scale-RAE feeds its DiT (ZitengWangNYU/Scale-RAE), for comparison: the tokens are the causal LM's (Qwen2.5)
last hidden state after its final norm (``scale_rae/model/language_model/scale_rae_qwen2.py:312`` norm,
``:757`` ``hidden_states = outputs[0]``), optionally through a linear ``diff_head_projector`` (``:453-455``).
That is this conditioner's default (``family: causal-lm``, ``layer: -1``); the projection lives in the
denoiser (``text_proj``). Scale-RAE's null condition is a learned zero-initialised vector
(``scale_rae/model/diffusion_loss/models/model_utils.py:238``); here it is the encoding of the empty prompt,
or, with the denoiser's ``learned_null``, a learned embedding there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rae_conditioners.configs import TextConditionerConfig
from rae_conditioners.tokenizers import load_tokenizer, max_length
from rae_framework import ensure_torchvision_importable
from rae_framework.conditioning import Conditioning
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Conditioner

TOWERS = {"causal-lm": "AutoModel", "t5": "T5EncoderModel", "clip": "CLIPTextModel", "siglip": "SiglipTextModel"}


def build_text_model(config: TextConditionerConfig) -> torch.nn.Module:
    """The tower of ``config.family``: pretrained from ``model``, or random (seeded) from ``architecture``."""
    ensure_torchvision_importable()
    import transformers

    tower, dtype = getattr(transformers, TOWERS[config.family]), getattr(torch, config.dtype)
    if config.architecture is not None:
        settings = dict(config.architecture)
        hf_config = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = tower.from_config(hf_config) if tower is transformers.AutoModel else tower(hf_config)
        return model.to(dtype)
    try:
        return tower.from_pretrained(config.model, dtype=dtype)
    except OSError as error:
        raise ConfigError(f"text model '{config.model}' cannot be loaded ({error}); download it first "
                          f"(huggingface-cli download {config.model}) or name a local folder") from None


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``tokens (B, L, D)``, ``mask (B, L)`` bool -> mean of the real tokens ``(B, D)`` (zero for none)."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)  # (B, L, 1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TextConditioner(Conditioner):
    """Prompts -> ``Conditioning(pooled (B, D), tokens (B, L, D), mask (B, L))`` in float32, L = the longest
    prompt of the batch (at most ``max_length`` tokens), or ``max_length`` with ``padding: max_length``.
    The text model is frozen and stays in eval mode."""

    Config = TextConditionerConfig
    input_kind = "text"

    def __init__(self, config: TextConditionerConfig) -> None:
        super().__init__(config)
        self.model = build_text_model(config).eval().requires_grad_(False)
        self.tokenizer = load_tokenizer(config)
        hf_config = getattr(self.model.config, "text_config", self.model.config)
        self.token_dim = self.pooled_dim = int(getattr(hf_config, "hidden_size", None) or hf_config.d_model)
        if config.width is not None and config.width != self.token_dim:
            raise ConfigError(f"text conditioner: width {config.width} but the model's hidden size is "
                              f"{self.token_dim}")
        self.max_length = max_length(config, self.tokenizer, getattr(hf_config, "max_position_embeddings", None))
        vocab = getattr(hf_config, "vocab_size", None)
        if vocab is not None and len(self.tokenizer) > vocab:
            raise ConfigError(f"text conditioner: the tokenizer has {len(self.tokenizer)} tokens, the model's "
                              f"vocabulary only {vocab}")

    def train(self, mode: bool = True) -> TextConditioner:
        """Frozen: the text model stays in eval mode (no dropout) whatever the caller asks."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def encode(self, conditions: Sequence[str]) -> Conditioning:
        """B prompts -> their Conditioning (padding rows of ``tokens`` are zero, ``mask`` False there)."""
        prompts = [conditions] if isinstance(conditions, str) else list(conditions)
        if not all(isinstance(prompt, str) for prompt in prompts):
            raise ConfigError(f"the text conditioner takes prompts (strings), got {prompts[:3]!r}")
        device = next(self.model.parameters()).device
        # SigLIP pools its last position, so its prompts are padded to max_length as it was trained.
        padding = "max_length" if self.config.family == "siglip" else self.config.padding
        batch = self.tokenizer(prompts, padding=padding, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(device)
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         output_hidden_states=True)
        mask = batch["attention_mask"].bool()  # (B, L)
        states = out.last_hidden_state if self.config.layer == -1 else out.hidden_states[self.config.layer]
        tokens = states.float() * mask.unsqueeze(-1)  # (B, L, D)
        pooled = out.pooler_output.float() if self.config.resolved_pooling == "model" else masked_mean(tokens, mask)
        return Conditioning(pooled=pooled, tokens=tokens, mask=mask)

    def null(self, batch_size: int) -> Conditioning:
        """The encoding of ``null_prompt`` repeated ``batch_size`` times, flagged null."""
        one = self.encode([self.config.null_prompt])
        rows = torch.zeros(batch_size, dtype=torch.long, device=one.tokens.device)
        return one.rows(rows).with_null(torch.ones(batch_size, dtype=torch.bool, device=rows.device))
