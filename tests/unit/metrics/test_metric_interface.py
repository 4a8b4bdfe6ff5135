"""interfaces.Metric: a metric must declare ``paired`` and its mergeable state before it can be built."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from rae_framework.config import ComponentConfig
from rae_framework.interfaces import Metric


class _Config(ComponentConfig):
    """No settings."""


class _Count(Metric):
    """Counts images; declares everything the contract asks for."""

    Config = _Config
    paired: ClassVar[bool] = False
    state_reductions: ClassVar[dict[str, str]] = {"count": "sum"}

    def __init__(self, config: _Config) -> None:
        super().__init__(config)
        self.reset()

    def reset(self) -> None:
        self.count = torch.zeros((), dtype=torch.float64)

    def update(self, generated=None, reference=None) -> None:
        self.count += len(generated)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"count": self.count}

    def load_state_tensors(self, state) -> None:
        self.count = state["count"]

    def compute(self) -> dict[str, float]:
        return {"count": float(self.count)}


def test_a_declared_metric_builds_and_feeds_no_reference_images_by_default():
    metric = _Count(_Config())
    metric.update(torch.zeros(3, 3, 4, 4))
    assert metric.compute() == {"count": 3.0} and metric.wants_reference_images is False


@pytest.mark.parametrize(("attributes", "message"), [
    ({"paired": None}, "paired must be declared as a bool"),
    ({"paired": "yes"}, "paired must be declared as a bool"),
    ({"state_reductions": None}, "must declare state_reductions"),
    ({"state_reductions": {"count": "mean"}}, "use 'sum' or 'cat'"),
])
def test_an_undeclared_contract_is_an_error(attributes, message):
    broken = type("Broken", (_Count,), attributes)
    with pytest.raises(TypeError, match=message):
        broken(_Config())
