"""Registers this package's components with rae-framework through the public hook."""

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """Components of this plugin (filled in as they are implemented)."""
