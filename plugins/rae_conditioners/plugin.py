"""Registers the built-in conditioner components with rae-framework through the public hook."""

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """The built-in conditioners (filled in by their issue's work)."""
