"""A Session owns one plugin manager, its registry and the preset catalog. There are no globals.

While a session builds a component it is the *active* session (a context variable, local to the thread or
task), so that nested builds (a metric's feature extractor, the interop converters) use the caller's
session, with its disabled and in-process plugins, instead of loading the entry points again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import ValidationError

from rae_framework.errors import ConfigError
from rae_framework.plugins import PluginManager
from rae_framework.presets import PresetCatalog, catalog_paths
from rae_framework.registry import Entry, Registry


_ACTIVE: ContextVar[Session | None] = ContextVar("rae_framework_active_session", default=None)


def active_session() -> Session | None:
    """The session building a component right now (see the module docstring), or None."""
    return _ACTIVE.get()


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per pydantic error: ``dotted.path: message (got value)``."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        lines.append(f"{path or '<root>'}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


class Session:
    """Plugins, registry and presets, loaded once; builds components by kind and name."""

    def __init__(self, *, entry_points: bool = True, plugins: Iterable[tuple[str, object]] = (),
                 strict: bool | None = None, disabled: set[str] | None = None) -> None:
        self.registry = Registry()
        self.plugin_manager = PluginManager(self.registry, strict=strict, disabled=disabled)
        if entry_points:
            self.plugin_manager.load_entry_points()
        for name, plugin in plugins:
            self.plugin_manager.load_plugin(plugin, name)
        self.presets = PresetCatalog([*catalog_paths(), *self.plugin_manager.preset_paths])

    def resolve_params(self, kind: str, name: str, params: dict[str, Any] | None = None,
                       preset: str | None = None) -> dict[str, Any]:
        """The preset's params (if any) with ``params`` merged over them."""
        base: dict[str, Any] = {}
        if preset is not None:
            found = self.presets.get(kind, preset)
            if found.component != name:
                raise ConfigError(f"{kind} preset '{preset}' is for component '{found.component}', not '{name}'")
            base = found.params
        return deep_merge(base, params or {})

    def make_config(self, kind: str, name: str, params: dict[str, Any] | None = None,
                    preset: str | None = None) -> Any:
        """Validate parameters into the component's Config; errors name the dotted path."""
        entry = self.registry.get(kind, name)
        merged = self.resolve_params(kind, name, params, preset)
        try:
            return entry.load_config_model().model_validate(merged)
        except ValidationError as error:
            raise ConfigError(f"Invalid params for {kind} '{name}':\n"
                              f"{format_validation_error(error, 'params')}") from None

    def build(self, kind: str, name: str, params: dict[str, Any] | None = None, *,
              preset: str | None = None) -> Any:
        """A ready component of ``kind`` named ``name`` (preset params, then ``params`` on top)."""
        config = self.make_config(kind, name, params, preset)
        return self.build_from_config(self.registry.get(kind, name), config)

    def build_from_config(self, entry: Entry, config: Any) -> Any:
        """Instantiate ``entry``'s class with an already validated config, this session active and the
        torchvision compatibility step applied first (its class may import timm, open_clip, transformers)."""
        from rae_framework import compat

        compat.ensure_torchvision_importable()
        with self.active():
            return entry.load_factory()(config)

    @contextmanager
    def active(self) -> Iterator[Session]:
        """Make this the active session (nested ``rae_framework.build`` calls use it) inside the block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
