"""The denoiser fields derived from the conditioner, as :mod:`rae_framework.latent_fields` derives the latent
ones from the encoder.

The ``conditioner`` role is resolved right after the encoder; its Config exposes ``num_classes`` (class labels)
or ``token_dim`` / ``pooled_dim`` (text), which are filled into every denoiser role whose Config declares them
(``num_classes``, ``text_dim``, ``pooled_dim``). A preset's value yields; a value written in the assembly that
contradicts the conditioner is an error. Without a conditioner nothing is derived (the class path as before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CONDITIONER_KIND = "conditioner"
# Denoiser param <- the conditioner Config's property of that meaning.
DERIVED_FROM_CONDITIONER = {"num_classes": "num_classes", "text_dim": "token_dim", "pooled_dim": "pooled_dim"}


@dataclass
class ConditionFields:
    """The conditioner's widths once it is resolved (empty before, or without one)."""

    values: dict[str, Any] = field(default_factory=dict)

    def take_conditioner(self, spec: Any, issues: Any) -> None:
        """Record what the resolved conditioner gives the denoiser; an issue when a text conditioner's width
        cannot be known here (a hub model whose config is not on disk)."""
        config = spec.config
        if getattr(config, "input_kind", None) == "text" and getattr(config, "token_dim", None) is None:
            issues.add(("components", "conditioner", "params"), "the text model's hidden size is unknown offline "
                                                                "(no config.json in a local folder or the HF "
                                                                "cache): set params.width", show_value=False)
        self.values = {param: getattr(config, source) for param, source in DERIVED_FROM_CONDITIONER.items()
                       if getattr(config, source, None) is not None}

    def fill(self, role: str, kind: str, model: type, merged: dict[str, Any], written: dict[str, Any],
             issues: Any) -> bool:
        """Put the conditioner's values into a denoiser's ``merged`` params; False when a written one
        contradicts them."""
        if kind != "denoiser":
            return True
        consistent = True
        for param, expected in self.values.items():
            if param not in getattr(model, "model_fields", {}):
                continue
            if param in written and written[param] is not None and written[param] != expected:
                issues.add(("components", role, "params", param),
                           f"contradicts the conditioner, which gives {expected!r}; leave it out to have it "
                           "derived", written[param])
                consistent = False
            else:
                merged[param] = expected
        return consistent
