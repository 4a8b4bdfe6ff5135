"""Mergeable metric state: the implementation of :class:`rae_framework.interfaces.Metric`'s state contract
shared by this plugin's metrics.

Every metric of this plugin keeps its running state in named tensors and declares, per name, how states
of two ranks combine: ``"sum"`` (add; ``torch.distributed.all_reduce`` works) or ``"cat"`` (concatenate
along dim 0; gather the rows, or gather the states and :meth:`merge` them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from rae_framework.interfaces import Reduction

__all__ = ["MergeableState", "Reduction"]


class MergeableState:
    """Mixin holding named state tensors; subclasses declare ``state_reductions`` and call ``_reset_state``."""

    state_reductions: ClassVar[Mapping[str, Reduction]]

    def _reset_state(self) -> None:
        self._state: dict[str, list[torch.Tensor]] = {name: [] for name in self.state_reductions}

    def _add_state(self, name: str, value: torch.Tensor) -> None:
        """Accumulate ``value`` into state ``name`` (kept on CPU, float64 for sums)."""
        value = value.detach().cpu()
        self._state[name].append(value.double() if self.state_reductions[name] == "sum" else value)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The current state, one tensor per name (sums collapsed, rows concatenated)."""
        return {name: self._collapse(name) for name in self.state_reductions}

    def _collapse(self, name: str) -> torch.Tensor:
        parts = self._state[name]
        if not parts:
            return self._empty_state(name)
        return torch.stack(parts).sum(0) if self.state_reductions[name] == "sum" else torch.cat(parts)

    def _empty_state(self, name: str) -> torch.Tensor:
        """State ``name`` before any update; sums must have their final shape so that ranks can all-reduce."""
        return torch.zeros((), dtype=torch.float64) if self.state_reductions[name] == "sum" else torch.zeros(0)

    def load_state_tensors(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the state (e.g. with all-reduced tensors); unknown or missing names are an error."""
        if set(state) != set(self.state_reductions):
            raise KeyError(f"expected state names {sorted(self.state_reductions)}, got {sorted(state)}")
        self._reset_state()
        for name, value in state.items():
            if value.numel() > 0:
                self._state[name].append(value.detach().cpu())

    def merge(self, other: MergeableState) -> None:
        """Fold another instance's state (e.g. gathered from another rank) into this one."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for name in self.state_reductions:
            self._state[name].extend(other._state[name])
