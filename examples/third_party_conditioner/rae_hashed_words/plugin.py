"""The plugin module named by the entry point: registers the conditioner and ships its presets."""

from pathlib import Path

from rae_framework import hookimpl


@hookimpl
def rae_register_components(registrar):
    """Register conditioner 'hashed-words' by lazy references (nothing is imported now)."""
    registrar.add("conditioner", "hashed-words", factory="rae_hashed_words.conditioner:HashedWordsConditioner",
                  config="rae_hashed_words.configs:HashedWordsConfig",
                  summary="Prompt words embedded by hashing into a fixed random table (template plugin)")


@hookimpl
def rae_preset_paths():
    """This package's presets file."""
    return [str(Path(__file__).with_name("presets.yaml"))]
