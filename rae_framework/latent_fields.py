"""The component fields derived from the latent shape, in one place, read top to bottom.

The encoder is resolved first; its Config gives the latent shape ``(C, h, w)``
(:func:`~rae_framework.config.latent_shape_of`). Every later component whose Config declares a field of
:data:`DERIVED_FIELDS` gets it filled in: a preset's value (written for the encoder the preset was made with)
yields, a value written in the assembly that contradicts the shape is an error. A derived field left missing is
explained ("add an encoder or set it"), or not reported at all when the declared encoder is itself invalid (the
encoder's error says what is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rae_framework.config import LatentShape, latent_shape_of

# Params filled from the latent shape (C, h, w) when a kind's Config declares them.
DERIVED_FIELDS: dict[str, dict[str, Any]] = {
    "decoder": {"token_dim": lambda shape: shape.channels, "num_patches": lambda shape: shape.tokens},
    "denoiser": {"in_channels": lambda shape: shape.channels, "input_size": lambda shape: shape.height},
    "schedule": {"latent_shape": lambda shape: tuple(shape)},
}
DERIVABLE = frozenset(field for fields in DERIVED_FIELDS.values() for field in fields)


@dataclass
class LatentFields:
    """The latent shape once the encoder is resolved (None before, or without a valid encoder), and whether
    the file declares an encoder at all. ``issues`` is the assembly's issue collector."""

    encoder_declared: bool
    shape: LatentShape | None = None

    def take_encoder(self, spec: Any, issues: Any) -> None:
        """Record the resolved encoder's latent shape; an issue when its Config does not expose one."""
        self.shape = latent_shape_of(spec.config)
        if self.shape is None:
            issues.add(("components", "encoder"), f"the Config of encoder '{spec.name}' must expose integer "
                                                  "properties 'token_dim' and 'grid_size'", show_value=False)

    def fill(self, role: str, kind: str, model: type, merged: dict[str, Any], written: dict[str, Any],
             issues: Any) -> bool:
        """Put the derived values into ``merged`` (the component's params, ``written`` those of the assembly
        file); False when a written one contradicts them."""
        if self.shape is None:
            return True
        consistent = True
        for field, derive in DERIVED_FIELDS.get(kind, {}).items():
            if field not in getattr(model, "model_fields", {}):
                continue
            expected, given = derive(self.shape), merged.get(field)
            if given is None or field not in written:
                merged[field] = expected
            elif _as_tuple(given) != _as_tuple(expected):
                issues.add(("components", role, "params", field),
                           f"contradicts the encoder's latent shape (C, h, w) = {self.shape}: expected {expected!r}; "
                           "leave it out to have it derived", given)
                consistent = False
        return consistent

    def handles_missing(self, here: tuple, kind: str, item: dict[str, Any], issues: Any) -> bool:
        """Whether a pydantic error ``item`` is a derived field left missing, reported here (explained, or
        skipped because the declared encoder is at fault)."""
        missing = item["type"] == "missing" and item["loc"] and item["loc"][0] in DERIVABLE
        if not missing or self.shape is not None or kind not in DERIVED_FIELDS:
            return False
        if not self.encoder_declared:
            issues.add((*here, "params", *item["loc"]), "required; it is derived from the encoder, so add "
                                                        "an 'encoder' component or set it", show_value=False)
        return True


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value
