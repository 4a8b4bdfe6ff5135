"""The component registry: kind -> name -> :class:`Entry` (lazy factory, Config model, provenance).

Nothing here imports torch or a plugin's code: entries hold ``"module:attribute"`` strings that are
resolved only when a component's config or class is actually needed.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rae_framework.errors import ConfigError, DuplicateComponentError, UnknownComponentError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
REFERENCE_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

CORE_KINDS: dict[str, str] = {
    "encoder": "rae_framework.interfaces:Encoder",
    "decoder": "rae_framework.interfaces:Decoder",
    "denoiser": "rae_framework.interfaces:Denoiser",
    "schedule": "rae_framework.interfaces:NoiseSchedule",
    "sampler": "rae_framework.interfaces:Sampler",
    "discriminator": "rae_framework.interfaces:Discriminator",
    "guidance": "rae_framework.interfaces:Guidance",
    "metric": "rae_framework.interfaces:Metric",
    "perceptual": "rae_framework.interfaces:PerceptualLoss",
    "stage": "rae_framework.interfaces:Stage",
    "gan_loss": "rae_framework.interfaces:AdversarialLoss",
    "augmentation": "rae_framework.interfaces:Augmentation",
    "tracker": "rae_framework.interfaces:Tracker",
    "conditioner": "rae_framework.interfaces:Conditioner",
}


def import_reference(reference: str) -> Any:
    """Resolve ``"package.module:Attr.sub"`` to the object it names."""
    module_name, _, attribute_path = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute_path.split("."):
        target = getattr(target, part)
    return target


@dataclass(frozen=True)
class Provenance:
    """Where an entry comes from: the plugin (entry-point name) and its distribution."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """Human-readable origin, e.g. ``plugin 'encoders' (rae-framework 0.1.0)``."""
        if self.distribution is None:
            return f"plugin '{self.plugin}'"
        return f"plugin '{self.plugin}' ({self.distribution} {self.version or '?'})"


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: str  # "module:Class"; called with the validated Config
    config: str  # "module:Config"; a torch-free pydantic model
    provenance: Provenance
    summary: str = ""

    def load_config_model(self) -> type:
        """Import and return the component's pydantic Config class."""
        return import_reference(self.config)

    def load_factory(self) -> Any:
        """Import and return the component's class (or factory callable)."""
        return import_reference(self.factory)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view, used by ``rae list --json``."""
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "factory": self.factory,
            "config": self.config,
            "plugin": self.provenance.plugin,
            "distribution": self.provenance.distribution,
            "version": self.provenance.version,
        }


def did_you_mean(word: str, candidates: list[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass
class Registry:
    """kind -> name -> Entry. Owned by a :class:`~rae_framework.session.Session`; never global."""

    kinds: dict[str, str] = field(default_factory=lambda: dict(CORE_KINDS))
    _entries: dict[str, dict[str, Entry]] = field(default_factory=dict)

    def add_kind(self, kind: str, interface: str) -> None:
        """Declare a new kind of component whose classes implement ``interface`` ("module:Class")."""
        _check_name(kind, "kind")
        _check_reference(interface, f"interface of kind '{kind}'")
        self.kinds.setdefault(kind, interface)

    def add(self, entry: Entry) -> None:
        """Register ``entry``; a second entry with the same kind and name is an error naming both origins."""
        self.require_kind(entry.kind)
        _check_name(entry.name, f"{entry.kind} name")
        _check_reference(entry.factory, f"factory of {entry.kind} '{entry.name}'")
        _check_reference(entry.config, f"config of {entry.kind} '{entry.name}'")
        existing = self._entries.setdefault(entry.kind, {}).get(entry.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{entry.kind} '{entry.name}' is registered twice: by {existing.provenance.describe()} "
                f"and by {entry.provenance.describe()}"
            )
        self._entries[entry.kind][entry.name] = entry

    def add_all(self, kinds: list[tuple[str, str]], entries: list[Entry]) -> None:
        """Declare ``kinds`` and register ``entries`` together: if any one is invalid or taken (also twice
        within ``entries``), the error is raised and the registry is left exactly as it was."""
        trial = Registry(dict(self.kinds), {kind: dict(names) for kind, names in self._entries.items()})
        for kind, interface in kinds:
            trial.add_kind(kind, interface)
        for entry in entries:
            trial.add(entry)
        self.kinds, self._entries = trial.kinds, trial._entries

    def require_kind(self, kind: str) -> None:
        """Raise :class:`UnknownComponentError` (with a suggestion) unless ``kind`` is known."""
        if kind not in self.kinds:
            known = sorted(self.kinds)
            raise UnknownComponentError(
                f"Unknown kind '{kind}'.{did_you_mean(kind, known)} Available kinds: {', '.join(known)}"
            )

    def contains(self, kind: str, name: str) -> bool:
        """Whether ``kind``/``name`` is registered."""
        return name in self._entries.get(kind, {})

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``kind``/``name``, or an error listing the available names and their plugins."""
        self.require_kind(kind)
        entries = self._entries.get(kind, {})
        if name in entries:
            return entries[name]
        available = ", ".join(f"'{n}' ({e.provenance.plugin})" for n, e in sorted(entries.items())) or "none"
        raise UnknownComponentError(
            f"Unknown {kind} '{name}'.{did_you_mean(name, sorted(entries))} Available: {available}"
        )

    def names(self, kind: str) -> list[str]:
        """Sorted names registered under ``kind``."""
        self.require_kind(kind)
        return sorted(self._entries.get(kind, {}))

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        """All entries (of one kind, if given), sorted by kind and name."""
        kinds = [kind] if kind is not None else sorted(self.kinds)
        for each_kind in kinds:
            for name in self.names(each_kind):
                yield self._entries[each_kind][name]


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"Invalid {what} {name!r}: names match {NAME_PATTERN.pattern}")


def _check_reference(reference: str, what: str) -> None:
    if not isinstance(reference, str) or not REFERENCE_PATTERN.match(reference):
        raise ConfigError(f"Invalid {what} {reference!r}: expected 'package.module:Attribute'")


@dataclass
class Registrar:
    """What a plugin's ``rae_register_components`` hook receives: adds entries stamped with its provenance."""

    registry: Registry
    provenance: Provenance

    def add(self, kind: str, name: str, *, factory: str, config: str, summary: str = "") -> None:
        """Register component ``name`` of ``kind`` (lazy references, see :class:`Entry`)."""
        self.registry.add(Entry(kind, name, factory, config, self.provenance, summary))

    def add_kind(self, kind: str, interface: str) -> None:
        """Declare a new kind (e.g. ``metric``) whose components implement ``interface``."""
        self.registry.add_kind(kind, interface)
