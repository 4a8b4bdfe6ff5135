"""YAML with line numbers: ``yaml.safe_load`` semantics plus a map from dotted paths to source lines.

Only the safe loader is used (no Python tags, no arbitrary objects): libyaml's ``CSafeLoader`` when
PyYAML was built with it (same semantics, about ten times faster), else :class:`yaml.SafeLoader`. The
document is composed into nodes once, constructed with the safe constructor, and the nodes are walked to
record where each key and sequence item starts, so that errors can say ``file:line`` for any dotted path
such as ``components.denoiser.params.depth``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rae_framework.errors import ConfigError

PathKey = tuple[str, ...]
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class SourceMap:
    """Where each dotted path of a document was written: ``("a", "b") -> "file.yaml:12"``."""

    origin: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    overrides: dict[PathKey, str] = field(default_factory=dict)  # path -> "--set a.b=1"

    def locate(self, path: PathKey) -> str:
        """Where ``path`` was written: the ``--set`` that replaced it or one of its parents, else the
        ``file:line`` of its longest prefix written in the file."""
        prefixes = [tuple(path[:length]) for length in range(len(path), -1, -1)]
        for prefix in prefixes:
            if prefix in self.overrides:
                return self.overrides[prefix]
        line = next((self.lines[prefix] for prefix in prefixes if prefix in self.lines), 1)
        return f"{self.origin}:{line}"


def _record(node: yaml.Node, path: PathKey, loader: Any, lines: dict[PathKey, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(loader.construct_object(key_node, deep=True))
            lines[(*path, key)] = key_node.start_mark.line + 1
            _record(value_node, (*path, key), loader, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, str(index))] = item.start_mark.line + 1
            _record(item, (*path, str(index)), loader, lines)


def load_yaml_with_lines(text: str, origin: str) -> tuple[Any, SourceMap]:
    """Parse ``text`` like ``yaml.safe_load`` and return ``(data, source map)``.

    Raises :class:`ConfigError` with ``origin:line`` on malformed YAML.
    """
    loader = SAFE_LOADER(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        lines: dict[PathKey, int] = {}
        if node is not None:  # construct_document flattened merge keys (<<) into node.value
            _record(node, (), loader, lines)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{origin}:{line}: invalid YAML: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin}:1: invalid YAML: {error}") from None
    finally:
        loader.dispose()
    return data, SourceMap(origin, lines)


def load_yaml_file(path: str | Path) -> tuple[Any, SourceMap]:
    """Read and parse a YAML file (see :func:`load_yaml_with_lines`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    return load_yaml_with_lines(text, str(path))


def parse_override(override: str) -> tuple[PathKey, Any]:
    """``"stages.train_denoiser.steps=5"`` -> ``(("stages", "train_denoiser", "steps"), 5)``.

    The value is read as YAML (``5`` is an int, ``[1, 2]`` a list, ``null`` None, ``abc`` a string).
    """
    key, separator, raw = override.partition("=")
    parts = tuple(key.strip().split("."))
    if not separator or not all(parts):
        raise ConfigError(f"--set {override}: expected key=value with a dotted key, e.g. "
                          "stages.train_denoiser.steps=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {override}: the value is not valid YAML: {error}") from None
    return parts, value


def apply_override(document: Any, path: PathKey, value: Any) -> Any:
    """A copy of ``document`` with ``value`` set at ``path``; missing mappings are created, list items
    are addressed by index (``stages.evaluate.metrics.0=psnr``)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, list) and head.isdigit() and int(head) < len(document):
        items = list(document)
        items[int(head)] = apply_override(items[int(head)], rest, value)
        return items
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"--set {'.'.join(path)}=...: cannot set '{head}' inside a {type(document).__name__}")
    return {**document, head: apply_override(document.get(head), rest, value)}
