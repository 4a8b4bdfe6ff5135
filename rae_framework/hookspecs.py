"""pluggy hook specifications. The docstrings are the contract between the host and its plugins.

A plugin is a module with functions decorated by :data:`hookimpl`, named after the specs below, and
declared in its distribution's entry-point group ``rae_framework``::

    [project.entry-points.rae_framework]
    my_encoders = "my_package.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from rae_framework.registry import Registrar

PROJECT_NAME = "rae_framework"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RAEHookSpec:
    """All hooks a plugin may implement."""

    @hookspec
    def rae_register_components(self, registrar: Registrar) -> None:
        """Register components by calling ``registrar.add(kind, name, factory=..., config=..., summary=...)``.

        ``factory`` and ``config`` are lazy ``"module:attribute"`` references: nothing is imported at
        registration. ``config`` must point to a torch-free module so that listing, describing and validating
        never import torch. The registrar records the plugin and distribution as the entry's provenance.
        """

    @hookspec
    def rae_preset_paths(self) -> list[str]:
        """Return paths of preset YAML files or folders of them (the format of the repository's ``registry/``)."""
