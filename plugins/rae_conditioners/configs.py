"""Torch-free configurations of the conditioners (``rae list`` / ``describe`` / ``validate`` import no torch).

Each exposes the widths of the :class:`~rae_framework.conditioning.Conditioning` it produces as properties
(``pooled_dim``, ``token_dim``; ``num_classes`` for class labels), which the assembly fills into the denoiser,
as it fills the latent shape from the encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from rae_framework.config import ComponentConfig

BYTES_TOKENIZER = "bytes"  # the built-in byte-level tokenizer (offline, no files): tests and miniatures
TEXT_FAMILIES = ("causal-lm", "t5", "clip", "siglip")
DEFAULT_LENGTH_CAP = 512  # max_length when the tokenizer's model_max_length is unbounded (LLM tokenizers)


class ClassLabelConditionerConfig(ComponentConfig):
    """Class labels, passed through to the denoiser's own label embedding (today's class path, bit for bit)."""

    input_kind: ClassVar[str] = "labels"

    num_classes: int = Field(1000, ge=1, description="Number of classes; the null label is num_classes. The "
                                                     "assembly gives it to the denoiser (its num_classes).")

    @property
    def pooled_dim(self) -> None:
        """No pooled vector: the denoiser embeds the labels itself."""
        return None

    @property
    def token_dim(self) -> None:
        """No tokens."""
        return None


def _hidden_size(config: dict[str, Any]) -> int | None:
    """The token width of a transformers config dict (``d_model`` for T5, else ``hidden_size``), also inside
    a composite config's ``text_config``."""
    for key in ("hidden_size", "d_model"):
        if isinstance(config.get(key), int):
            return config[key]
    text = config.get("text_config")
    return _hidden_size(text) if isinstance(text, dict) else None


def local_model_config(model: str) -> dict[str, Any] | None:
    """``config.json`` of ``model`` from a local folder or the Hugging Face cache (torch-free, no network);
    None when neither holds it."""
    folder = Path(model) / "config.json"
    if folder.is_file():
        return json.loads(folder.read_text(encoding="utf-8"))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = try_to_load_from_cache(model, "config.json")
    return json.loads(Path(cached).read_text(encoding="utf-8")) if isinstance(cached, str) else None


class TextConditionerConfig(ComponentConfig):
    """A frozen transformers text model: prompts -> hidden states of one layer (tokens + padding mask) and a
    pooled vector. The null condition is the encoding of ``null_prompt`` (the empty prompt)."""

    input_kind: ClassVar[str] = "text"

    model: str | None = Field(None, description="Hub id or local folder of the pretrained text model (e.g. "
                                                "'Qwen/Qwen2.5-1.5B', 'google/t5-v1_1-xl'); exclusive with "
                                                "architecture.")
    architecture: dict[str, Any] | None = Field(
        None, description="A transformers config dict with 'model_type' (e.g. a tiny qwen2): random weights, "
                          "built offline (tests, miniatures); exclusive with model.")
    family: Literal["causal-lm", "t5", "clip", "siglip"] = Field(
        "causal-lm", description="Which tower to load: 'causal-lm' (the base model of a causal LM, Scale-RAE's "
                                 "choice), 't5' (T5EncoderModel), 'clip' (CLIPTextModel), 'siglip' "
                                 "(SiglipTextModel).")
    seed: int = Field(0, description="Seed of the random weights of a model built from architecture, so that "
                                     "every process (training, sampling, load_run) builds the same one.")
    tokenizer: str | None = Field(None, description="Hub id or local folder of the tokenizer; None = the model's; "
                                                    "'bytes' = a built-in byte-level tokenizer (offline).")
    layer: int = Field(-1, description="Hidden state used as tokens: -1 = the model's last hidden state (after "
                                       "its final norm, as Scale-RAE takes the LLM's), k >= 0 = the output of "
                                       "layer k (0 = the embeddings), other negatives count from the end.")
    max_length: int | None = Field(None, ge=1, description="Prompt tokens kept (longer prompts are truncated); "
                                                           "None = the tokenizer's model_max_length, capped at "
                                                           f"{DEFAULT_LENGTH_CAP} and at the model's positions.")
    padding: Literal["longest", "max_length"] = Field(
        "longest", description="Token length of a batch: 'longest' = its longest prompt (the least compute), "
                               "'max_length' = always max_length, so that a row's encoding and the denoiser's "
                               "shapes do not depend on how the global batch is split over processes (world-size "
                               "exact text runs). SigLIP always pads to max_length, as it was trained.")
    pooling: Literal["auto", "mean", "model"] = Field(
        "auto", description="Pooled vector: 'mean' of the real (unpadded) tokens, 'model' = the model's pooled "
                            "output (CLIP, SigLIP), 'auto' = 'model' where the tower has one, else 'mean'.")
    null_prompt: str = Field("", description="The prompt whose encoding is the null condition of CFG.")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Dtype of the frozen text model; the "
                                                                          "conditioning is returned in float32.")
    width: int | None = Field(None, ge=1, description="Hidden size of the text model; None = read from "
                                                      "architecture or the model's config.json (local or HF cache).")

    @model_validator(mode="after")
    def _one_source(self) -> TextConditionerConfig:
        if (self.model is None) == (self.architecture is None):
            raise ValueError("give exactly one of model (pretrained weights) and architecture (random weights)")
        if self.architecture is not None:
            if "model_type" not in self.architecture:
                raise ValueError("architecture needs a 'model_type' (e.g. 'qwen2', 't5', 'clip_text_model')")
            if self.tokenizer is None:
                raise ValueError("a model built from architecture has no tokenizer: set tokenizer (a hub id, a "
                                 "folder, or 'bytes')")
        if self.pooling == "model" and self.family not in ("clip", "siglip"):
            raise ValueError(f"pooling 'model' needs a tower with a pooled output (clip, siglip), not {self.family}")
        return self

    @property
    def hidden_size(self) -> int | None:
        """The text model's width (torch-free): ``width``, else from its config; None when unknown here."""
        if self.width is not None:
            return self.width
        config = self.architecture if self.architecture is not None else local_model_config(self.model)
        return _hidden_size(config) if config else None

    @property
    def token_dim(self) -> int | None:
        """Dt of the tokens (the hidden size)."""
        return self.hidden_size

    @property
    def pooled_dim(self) -> int | None:
        """Dp of the pooled vector (the hidden size, for mean and model pooling alike)."""
        return self.hidden_size

    @property
    def resolved_pooling(self) -> str:
        """'mean' or 'model'."""
        if self.pooling != "auto":
            return self.pooling
        return "model" if self.family in ("clip", "siglip") else "mean"
