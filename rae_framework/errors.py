"""The framework's exception hierarchy: every user-facing failure is an :class:`RAEError`."""

from __future__ import annotations


class RAEError(Exception):
    """Base class of every error this framework raises on purpose."""


class ConfigError(RAEError):
    """Invalid input: an assembly, a parameter, a preset. The CLI exits with code 2."""


class UnknownComponentError(ConfigError, LookupError):
    """A kind or component name that no plugin registers."""


class DuplicateComponentError(RAEError):
    """Two plugins register the same kind and name."""


class PluginLoadError(RAEError):
    """A plugin failed to import or to register its components."""


class WeightsNotFoundError(RAEError):
    """Pretrained weights are not available locally (and the network is off or not allowed)."""


class TrainingDivergedError(RAEError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""
