"""Contract tests for components, shared by this project and third-party plugin authors.

``from rae_framework.testing import EncoderContract, contract_tests_for`` (see
:mod:`rae_framework.testing.contracts`). Attributes load lazily: importing this package (pytest does, for
the ``pytest11`` plugin) imports neither torch nor pytest's test machinery.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ComponentContract",
    "ConditionerContract",
    "ContractCase",
    "DecoderContract",
    "DenoiserContract",
    "DiscriminatorContract",
    "EncoderContract",
    "GuidanceContract",
    "KIND_CONTRACTS",
    "MetricContract",
    "OtherKindsContract",
    "PerceptualContract",
    "SamplerContract",
    "ScheduleContract",
    "StageContract",
    "TrackerContract",
    "contract_cases",
    "contract_tests_for",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("rae_framework.testing.contracts"), name)
    raise AttributeError(f"module 'rae_framework.testing' has no attribute '{name}'")
