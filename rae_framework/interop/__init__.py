"""Import of the reference implementation's (bytetriper/RAE) classes, configs and checkpoints.

``load_official(target, params, state_dict)`` builds this framework's component from the reference class
name, its constructor kwargs and a state dict in the reference's key layout, and returns it with those
weights loaded strictly. Converters live one file per family and are resolved lazily.
"""

from __future__ import annotations

from typing import Any

from rae_framework.errors import ConfigError
from rae_framework.registry import did_you_mean, import_reference
from rae_framework.session import Session, active_session

OFFICIAL_CONVERTERS: dict[str, str] = {
    "LightningDiT": "rae_framework.interop.official_dit:load_lightning_dit",
    "DiTwDDTHead": "rae_framework.interop.official_dit:load_dit_dh",
    "GeneralDecoder": "rae_framework.interop.official_rae:load_general_decoder",
    "RAE": "rae_framework.interop.official_rae:load_rae",
}


def load_official(target: str, params: dict[str, Any], state_dict: dict[str, Any] | None = None, *,
                  session: Session | None = None) -> Any:
    """Build the framework equivalent of reference class ``target`` with kwargs ``params``.

    ``state_dict`` (reference key names) is loaded strictly when given; ``None`` leaves fresh weights. Its
    components are built by ``session`` (else the active one, else one new session for all of them).
    """
    if target not in OFFICIAL_CONVERTERS:
        known = sorted(OFFICIAL_CONVERTERS)
        raise ConfigError(f"Unknown reference class '{target}'.{did_you_mean(target, known)} "
                          f"Supported: {', '.join(known)}")
    with (session or active_session() or Session()).active():
        return import_reference(OFFICIAL_CONVERTERS[target])(params, state_dict)
