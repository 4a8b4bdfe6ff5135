"""Nested config and metrics as flat ``a.b.c`` keys (MLflow params, scalar metrics)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``("a.b", 1), ("c", [1, 2])``: mappings are walked, other values
    (lists included) are leaves."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def as_text(value: Any) -> str:
    """A leaf as a param value: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def numbers(data: Mapping[str, Any]) -> dict[str, float]:
    """The numeric leaves of ``data`` (booleans excluded), flattened."""
    return {name: float(value) for name, value in flatten(data)
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
