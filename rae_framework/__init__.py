"""rae-framework: Representation Autoencoders + Diffusion Transformers as typed, swappable components.

The top level imports neither torch nor any plugin; ``build``, ``load_assembly`` and ``load_run`` do so on
demand.
"""

from __future__ import annotations

from typing import Any

from rae_framework.config import ComponentConfig
from rae_framework.errors import (
    ConfigError,
    DuplicateComponentError,
    PluginLoadError,
    RAEError,
    UnknownComponentError,
)
from rae_framework.hookspecs import hookimpl
from rae_framework.session import Session

__version__ = "0.1.0"

__all__ = [
    "ComponentConfig",
    "ConfigError",
    "DuplicateComponentError",
    "PluginLoadError",
    "RAEError",
    "Session",
    "UnknownComponentError",
    "build",
    "hookimpl",
    "load_assembly",
    "load_run",
]


def build(kind: str, name: str, params: dict[str, Any] | None = None, *, preset: str | None = None,
          session: Session | None = None) -> Any:
    """Build a ready component, e.g. ``build("denoiser", "dit-dh", preset="dit-dh-s")``."""
    from rae_framework import compat

    compat.ensure_torchvision_importable()
    return (session or Session()).build(kind, name, params, preset=preset)


def load_assembly(path: str, overrides: list[str] | None = None, *, session: Session | None = None) -> Any:
    """Read and validate an assembly YAML file (with optional ``key=value`` overrides)."""
    from rae_framework.assembly import load_assembly as _load

    return _load(path, overrides or [], session=session or Session())


def load_run(run_dir: str, device: Any = None) -> Any:
    """A sampling/encoding pipeline over a finished run directory (its resolved assembly and EMA weights):
    ``pipe = load_run("runs/quickstart"); pipe([3, 7], num_images_per_label=4).images`` -> PIL images.
    See :class:`rae_framework.pipeline.RAEPipeline`."""
    from rae_framework.pipeline import load_run as _load

    return _load(run_dir, device)
