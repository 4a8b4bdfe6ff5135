"""Presets: named parameter sets for a component, read from the catalog YAML files (``registry/``).

File format (one file per kind or family, one line per preset)::

    kind: denoiser
    presets:
      dit-dh-s: {component: dit-dh, params: {hidden_size: [384, 2048], depth: [12, 2]}, summary: "..."}
      dit-dh-s-tiny: {component: dit-dh, params: {...}, summary: "tiny config used by the contract tests"}

An entry may add ``weights: {source: <hub id or path>, file: <name>, sha256: <hex>}``. Every component has
at least one preset, and one whose name ends in ``-tiny`` that the contract tests build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import importlib.util
from pathlib import Path
from typing import Any

from rae_framework.errors import ConfigError, UnknownComponentError
from rae_framework.registry import did_you_mean
from rae_framework.yaml_lines import load_yaml_file

CATALOG_PACKAGE = "rae_catalog"  # the repository's registry/ folder, shipped as package data


@dataclass(frozen=True)
class Preset:
    """One named parameter set of one component."""

    kind: str
    name: str
    component: str
    params: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    weights: dict[str, Any] | None = None
    source: str = ""  # "file:line" it was read from

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"kind": self.kind, "name": self.name, "component": self.component, "params": self.params,
                "summary": self.summary, "weights": self.weights, "source": self.source}


def catalog_paths() -> list[Path]:
    """YAML files of the first-party catalog (empty if it is not installed)."""
    spec = importlib.util.find_spec(CATALOG_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return sorted(path for folder in folders for path in Path(folder).glob("*.y*ml"))


def preset_files(paths: list[str | Path]) -> list[Path]:
    """The YAML files named by ``paths`` (files, or folders of ``*.yaml``/``*.yml``)."""
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.glob("*.y*ml")) if path.is_dir() else [path])
    return files


def read_preset_file(path: Path) -> list[Preset]:
    """Parse one catalog file; malformed content raises :class:`ConfigError` with ``file:line``."""
    document, source_map = load_yaml_file(path)
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str) \
            or not isinstance(document.get("presets"), dict):
        raise ConfigError(f"{path}:1: a preset file is a mapping with 'kind' and 'presets'")
    presets = []
    for name, body in document["presets"].items():
        where = source_map.locate(("presets", str(name)))
        if not isinstance(body, dict) or not isinstance(body.get("component"), str):
            raise ConfigError(f"{where}: preset '{name}' needs a 'component' name")
        unknown = set(body) - {"component", "params", "summary", "weights"}
        if unknown:
            raise ConfigError(f"{where}: preset '{name}' has unknown keys {sorted(unknown)}")
        presets.append(Preset(document["kind"], str(name), body["component"], dict(body.get("params") or {}),
                              str(body.get("summary", "")), body.get("weights"), where))
    return presets


class PresetCatalog:
    """All presets of a session: kind -> preset name -> :class:`Preset`."""

    def __init__(self, paths: list[str | Path]) -> None:
        self._presets: dict[str, dict[str, Preset]] = {}
        for path in preset_files(paths):
            for preset in read_preset_file(path):
                self._add(preset)

    def _add(self, preset: Preset) -> None:
        existing = self._presets.setdefault(preset.kind, {}).get(preset.name)
        if existing is not None:
            raise ConfigError(f"{preset.source}: preset {preset.kind} '{preset.name}' is already defined at "
                              f"{existing.source}")
        self._presets[preset.kind][preset.name] = preset

    def get(self, kind: str, name: str) -> Preset:
        """The preset, or an error with a suggestion and the available names."""
        presets = self._presets.get(kind, {})
        if name not in presets:
            available = ", ".join(sorted(presets)) or "none"
            raise UnknownComponentError(
                f"Unknown {kind} preset '{name}'.{did_you_mean(name, sorted(presets))} Available: {available}")
        return presets[name]

    def all(self, kind: str | None = None) -> list[Preset]:
        """Presets sorted by kind and name."""
        kinds = [kind] if kind else sorted(self._presets)
        return [self._presets.get(k, {})[n] for k in kinds for n in sorted(self._presets.get(k, {}))]
