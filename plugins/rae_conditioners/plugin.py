"""Registers the built-in conditioner components with rae-framework through the public hook."""

from rae_framework import hookimpl

_CONFIGS = "rae_conditioners.configs"


@hookimpl
def rae_register_components(registrar):
    """``class-label`` (today's label path) and ``text`` (a frozen transformers text model)."""
    registrar.add("conditioner", "class-label", factory="rae_conditioners.class_label:ClassLabelConditioner",
                  config=f"{_CONFIGS}:ClassLabelConditionerConfig",
                  summary="Class labels, embedded by the denoiser's own label table (the class path)")
    registrar.add("conditioner", "text", factory="rae_conditioners.text:TextConditioner",
                  config=f"{_CONFIGS}:TextConditionerConfig",
                  summary="Prompts through a frozen transformers text model (causal LM, T5, CLIP, SigLIP): "
                          "tokens, padding mask, pooled vector")
