"""Registers the built-in tracker components with rae-framework through the public hook."""

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """The built-in trackers (filled in by their issue's work)."""
