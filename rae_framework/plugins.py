"""The plugin manager: discovers entry points, loads each plugin in isolation, collects registrations.

A plugin that fails to import, implements an unknown hook, raises while registering, or registers a name
that is already taken is *reported* (see :attr:`PluginManager.reports`) and skipped, so one broken plugin
never takes the host down. ``RAE_STRICT_PLUGINS=1`` turns any such failure into a :class:`PluginLoadError`;
``RAE_DISABLE_PLUGINS=a,b`` skips the named plugins (entry-point names).

Registration is all-or-nothing: a plugin's kinds and components are staged and enter the registry together
only if every one is valid and untaken (:meth:`Registry.add_all`). :meth:`PluginManager.check_references`
resolves the lazy ``module:attr`` references of the loaded plugins (``rae plugins [--check]``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from rae_framework.errors import PluginLoadError, RAEError
from rae_framework.hookspecs import PROJECT_NAME, RAEHookSpec
from rae_framework.presets import preset_files, read_preset_file
from rae_framework.registry import Entry, Provenance, Registrar, Registry, import_reference

ENTRY_POINT_GROUP = "rae_framework"


@dataclass
class PluginReport:
    """Outcome of loading one plugin, shown by ``rae plugins``."""

    name: str
    provenance: Provenance
    status: str  # "loaded" | "failed" | "disabled"
    error: str | None = None
    components: list[str] = field(default_factory=list)  # "kind/name"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "name": self.name,
            "distribution": self.provenance.distribution,
            "version": self.provenance.version,
            "status": self.status,
            "error": self.error,
            "components": self.components,
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


class _StagingRegistrar(Registrar):
    """Collects one plugin's registrations so that a plugin failing halfway adds nothing."""

    def __init__(self, registry: Registry, provenance: Provenance) -> None:
        super().__init__(registry, provenance)
        self.staged: list[Entry] = []
        self.kinds: list[tuple[str, str]] = []

    def add(self, kind: str, name: str, *, factory: str, config: str, summary: str = "") -> None:
        self.staged.append(Entry(kind, name, factory, config, self.provenance, summary))

    def add_kind(self, kind: str, interface: str) -> None:
        self.kinds.append((kind, interface))


class PluginManager:
    """Loads plugins into a :class:`Registry`. One per :class:`~rae_framework.session.Session`."""

    def __init__(self, registry: Registry, *, strict: bool | None = None,
                 disabled: set[str] | None = None) -> None:
        self.registry = registry
        self.strict = _env_flag("RAE_STRICT_PLUGINS") if strict is None else strict
        self.disabled = _env_list("RAE_DISABLE_PLUGINS") if disabled is None else disabled
        self.reports: list[PluginReport] = []
        self.preset_paths: list[str] = []

    def load_entry_points(self) -> None:
        """Load every plugin declared in the ``rae_framework`` entry-point group, each in isolation."""
        for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            provenance = _provenance_of(entry_point)
            if entry_point.name in self.disabled:
                self.reports.append(PluginReport(entry_point.name, provenance, "disabled"))
                continue
            try:
                module = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import failure is reported, not raised
                self._fail(entry_point.name, provenance, f"import failed: {type(error).__name__}: {error}")
                continue
            self.load_plugin(module, entry_point.name, provenance)

    def load_plugin(self, module: ModuleType | object, name: str, provenance: Provenance | None = None) -> None:
        """Register one plugin object (module or instance with hookimpls) and collect its components."""
        provenance = provenance or Provenance(plugin=name)
        manager = pluggy.PluginManager(PROJECT_NAME)
        manager.add_hookspecs(RAEHookSpec)
        try:
            manager.register(module, name=name)
            manager.check_pending()
            registrar = _StagingRegistrar(self.registry, provenance)
            manager.hook.rae_register_components(registrar=registrar)
            preset_paths = [path for paths in manager.hook.rae_preset_paths() for path in paths]
            for preset_file in preset_files(preset_paths):  # a malformed file fails its plugin, not the host
                read_preset_file(preset_file)
            self._commit(registrar)
        except (Exception, pluggy.PluginValidationError) as error:  # noqa: BLE001 - reported, see module doc
            message = str(error) if isinstance(error, RAEError) else f"{type(error).__name__}: {error}"
            self._fail(name, provenance, message)
            return
        self.preset_paths.extend(preset_paths)
        components = [f"{entry.kind}/{entry.name}" for entry in registrar.staged]
        self.reports.append(PluginReport(name, provenance, "loaded", components=components))

    def _commit(self, registrar: _StagingRegistrar) -> None:
        """All of the plugin's kinds and entries, or (on an invalid or duplicate one) none of them."""
        self.registry.add_all(registrar.kinds, registrar.staged)

    def _fail(self, name: str, provenance: Provenance, message: str) -> None:
        if self.strict:
            raise PluginLoadError(f"Plugin '{name}' failed to load: {message}")
        self.reports.append(PluginReport(name, provenance, "failed", error=message))

    def check_references(self, *, factories: bool = False) -> None:
        """Resolve each loaded plugin's lazy references: every Config (torch-free, so always cheap) and, with
        ``factories``, every class (imports the models, hence torch). A plugin with a broken reference is
        re-reported as failed, each broken reference named."""
        for index, report in enumerate(self.reports):
            if report.status != "loaded":
                continue
            problems = [problem for entry in self.registry.entries() if entry.provenance == report.provenance
                        for problem in _broken_references(entry, factories)]
            if problems:
                self.reports[index] = PluginReport(report.name, report.provenance, "failed",
                                                   error="; ".join(problems), components=report.components)

    def failures(self) -> list[PluginReport]:
        """Reports of the plugins that failed to load."""
        return [report for report in self.reports if report.status == "failed"]


def _broken_references(entry: Entry, factories: bool) -> list[str]:
    """``kind/name: config 'module:Attr' ...`` for each reference of ``entry`` that does not resolve."""
    checks = [("config", entry.config, _is_config_model), *([("factory", entry.factory, callable)] * factories)]
    problems = []
    for role, reference, valid in checks:
        try:
            target = import_reference(reference)
        except Exception as error:  # noqa: BLE001 - any import failure is the finding being reported
            problems.append(f"{entry.kind}/{entry.name}: {role} '{reference}' does not import: "
                            f"{type(error).__name__}: {error}")
            continue
        if not valid(target):
            problems.append(f"{entry.kind}/{entry.name}: {role} '{reference}' is not a "
                            f"{'pydantic model class' if role == 'config' else 'callable'}")
    return problems


def _is_config_model(target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, BaseModel)


def _provenance_of(entry_point: metadata.EntryPoint) -> Provenance:
    distribution = entry_point.dist
    if distribution is None:
        return Provenance(plugin=entry_point.name)
    return Provenance(entry_point.name, distribution.metadata["Name"], distribution.version)
