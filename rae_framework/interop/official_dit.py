"""Import of the reference stage-2 denoisers (bytetriper/RAE ``LightningDiT`` and ``DiTwDDTHead``).

The reference constructor kwargs map onto this framework's ``lightning-dit`` / ``dit-dh`` configs
(missing kwargs take the reference's defaults); the module names are the reference's, so the state-dict
key map is the identity once wrapper prefixes (``module.`` from DDP, ``_orig_mod.`` from
``torch.compile``) are stripped. Loading is strict and reports every missing, unexpected or mis-shaped key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rae_framework.errors import ConfigError
from rae_framework.files import read_tensor_file

# The reference constructors' defaults (the released checkpoints' configs override most of them).
LIGHTNING_DIT_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "input_size": 16, "patch_size": 1, "in_channels": 768, "hidden_size": 1152, "depth": 28, "num_heads": 16,
    "mlp_ratio": 4.0, "class_dropout_prob": 0.1, "num_classes": 1000, "learn_sigma": True,
    "use_qknorm": False, "use_swiglu": True, "use_rope": True, "use_rmsnorm": True, "wo_shift": False,
})
LIGHTNING_DIT_UNUSED = frozenset({"use_gembed"})  # accepted and ignored by the reference too
DIT_DH_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "input_size": 1, "patch_size": 1, "in_channels": 768, "hidden_size": [1152, 2048], "depth": [28, 2],
    "num_heads": [16, 16], "mlp_ratio": 4.0, "class_dropout_prob": 0.1, "num_classes": 1000,
    "use_qknorm": False, "use_swiglu": True, "use_rope": True, "use_rmsnorm": True, "wo_shift": False,
    "use_pos_embed": True,
})
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def with_defaults(target: str, params: Mapping[str, Any], defaults: Mapping[str, Any],
                  ignored: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The reference kwargs completed with its defaults; an unknown kwarg is a :class:`ConfigError`."""
    unknown = sorted(set(params) - set(defaults) - ignored)
    if unknown:
        raise ConfigError(f"{target}: unknown constructor argument(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **{key: value for key, value in params.items() if key not in ignored}}


def as_pair(value: Any, name: str) -> list[Any]:
    """An int (same for body and head) or a 2-sequence -> a 2-list."""
    if isinstance(value, (int, float)):
        return [value, value]
    if len(value) != 2:
        raise ConfigError(f"DiTwDDTHead: {name} must be a number or a pair, got {value!r}")
    return list(value)


def lightning_dit_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Reference ``LightningDiT`` kwargs -> ``lightning-dit`` params."""
    return with_defaults("LightningDiT", params, LIGHTNING_DIT_DEFAULTS, LIGHTNING_DIT_UNUSED)


def dit_dh_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Reference ``DiTwDDTHead`` kwargs -> ``dit-dh`` params (a ``[s, x]`` patch pair must be equal)."""
    merged = with_defaults("DiTwDDTHead", params, DIT_DH_DEFAULTS)
    s_patch, x_patch = as_pair(merged["patch_size"], "patch_size")
    if s_patch != x_patch:
        raise ConfigError(f"DiTwDDTHead: different body/head patch sizes {[s_patch, x_patch]} are not "
                          f"supported; use one patch size")
    merged["patch_size"] = int(s_patch)
    merged["num_heads"] = as_pair(merged["num_heads"], "num_heads")
    return merged


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes from every key."""
    cleaned = {}
    for key, value in state_dict.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def check_state_dict(model: Any, state_dict: Mapping[str, Any], source: str) -> None:
    """Raise a :class:`ConfigError` listing missing, unexpected and mis-shaped keys (if any)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [f"{key}: {tuple(state_dict[key].shape)} vs ours {tuple(expected[key].shape)}"
              for key in sorted(set(expected) & set(state_dict))
              if tuple(state_dict[key].shape) != tuple(expected[key].shape)]
    problems = [f"{label}: {items}" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if items]
    if problems:
        raise ConfigError(f"{source} state dict does not match the built model:\n  " + "\n  ".join(problems))


def build_and_load(name: str, target: str, params: dict[str, Any],
                   state_dict: Mapping[str, Any] | None) -> Any:
    """Build denoiser ``name`` from validated ``params``; load ``state_dict`` strictly when given."""
    from rae_framework import build

    model = build("denoiser", name, params)
    if state_dict is not None:
        cleaned = strip_wrapper_prefixes(state_dict)
        check_state_dict(model, cleaned, target)
        model.load_state_dict(cleaned, strict=True)
    return model


def load_lightning_dit(params: Mapping[str, Any], state_dict: Mapping[str, Any] | None = None) -> Any:
    """``lightning-dit`` equivalent of reference ``LightningDiT(**params)`` with ``state_dict`` loaded."""
    return build_and_load("lightning-dit", "LightningDiT", lightning_dit_params(params), state_dict)


def load_dit_dh(params: Mapping[str, Any], state_dict: Mapping[str, Any] | None = None) -> Any:
    """``dit-dh`` equivalent of reference ``DiTwDDTHead(**params)`` with ``state_dict`` loaded."""
    return build_and_load("dit-dh", "DiTwDDTHead", dit_dh_params(params), state_dict)


def checkpoint_state_dict(checkpoint: Mapping[str, Any], use_ema: bool = True) -> Mapping[str, Any]:
    """The weights of a reference stage-2 training checkpoint (``{"model", "ema", ...}``) or a flat dict."""
    if "model" not in checkpoint and "ema" not in checkpoint:
        return checkpoint  # a released flat state dict
    key = "ema" if use_ema else "model"
    if key not in checkpoint:
        raise ConfigError(f"checkpoint has no '{key}' entry; top-level keys: {sorted(checkpoint)}")
    return checkpoint[key]


def load_official_checkpoint(target: str, params: Mapping[str, Any], path: str | Path,
                             use_ema: bool = True) -> Any:
    """Build ``target`` (e.g. ``"DiTwDDTHead"``) from a reference checkpoint file (``weights_only`` load).

    ``use_ema`` picks the ``"ema"`` weights (what the reference samples with), else ``"model"``.
    """
    from rae_framework.interop import load_official

    checkpoint = read_tensor_file(path, "reference checkpoint")
    return load_official(target, dict(params), checkpoint_state_dict(checkpoint, use_ema))
