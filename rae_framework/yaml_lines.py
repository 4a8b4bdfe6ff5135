"""YAML with line numbers: ``yaml.safe_load`` semantics plus a map from dotted paths to source lines.

Only the safe loader is used (no Python tags, no arbitrary objects): libyaml's ``CSafeLoader`` when
PyYAML was built with it (same semantics, about ten times faster), else :class:`yaml.SafeLoader`. The
document is composed into nodes once, constructed with the safe constructor, and the nodes are walked to
record where each key and sequence item starts, so that errors can say ``file:line`` for any dotted path
such as ``components.denoiser.params.depth``.

Malformed input never crashes or hangs: files are capped in size, must be UTF-8 text and regular files,
alias expansion is bounded before anything is constructed, and a key written twice in one mapping is an
error (``yaml.safe_load`` would silently keep the last).
"""

from __future__ import annotations

import codecs
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rae_framework.errors import AssemblyError, ConfigError, ConfigIssue

PathKey = tuple[str, ...]
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE_BYTES = 64 * 1024  # assemblies and preset files are a few KiB; the densest 64 KiB parse in ~0.2 s
MAX_NODES = 20_000  # values a document may expand to; bounds alias expansion ("billion laughs")
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class SourceMap:
    """Where each dotted path of a document was written: ``("a", "b") -> "file.yaml:12"``."""

    origin: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    overrides: dict[PathKey, str] = field(default_factory=dict)  # path -> "--set a.b=1"

    def locate(self, path: PathKey, *, within: bool = False) -> str:
        """Where ``path`` was written: the ``--set`` that replaced it or one of its parents, else the
        ``file:line`` of its longest prefix written in the file. ``within``: the ``--set`` overrides below
        ``path`` come first (for an error about ``path`` as a whole, e.g. a model validator's)."""
        prefixes = [tuple(path[:length]) for length in range(len(path), -1, -1)]
        below = [where for key, where in self.overrides.items() if within and key[:len(path)] == tuple(path)]
        if below:
            return ", ".join(below)
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

    Raises :class:`ConfigError` with ``origin:line`` on malformed YAML, on a document that expands to more
    than :data:`MAX_NODES` values or refers to itself through an alias, and on duplicate keys (which
    ``yaml.safe_load`` would resolve silently by keeping the last).
    """
    loader = SAFE_LOADER(text)
    try:
        node = loader.get_single_node()
        data, lines = None, {}
        if node is not None:
            _check_size(node, origin)
            _check_duplicates(node, origin)
            data = loader.construct_document(node)
            _record(node, (), loader, lines)  # construct_document flattened merge keys (<<) into node.value
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{origin}:{line}: invalid YAML: {error.problem or error}{_tab_hint(text, line)}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin}:{_error_line(error, text)}: invalid YAML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{origin}:1: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, SourceMap(origin, lines)


def _tab_hint(text: str, line: int) -> str:
    """A hint when the failing line (or the one before it) is indented with a tab."""
    nearby = text.splitlines()[max(line - 2, 0):line]
    if any("\t" in row[:len(row) - len(row.lstrip())] for row in nearby):
        return " (YAML forbids tabs for indentation; use spaces)"
    return ""


def _error_line(error: yaml.YAMLError, text: str) -> int:
    """The line of an unmarked error that knows its character position (e.g. a reader error), else 1."""
    position = getattr(error, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_size(root: yaml.Node, origin: str) -> None:
    """Bound the constructed size: aliases can make a few lines expand to billions of values."""
    sizes: dict[int, int] = {}  # id(node) -> values it expands to; aliased nodes are shared, so counted once
    active: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise ConfigError(f"{origin}:{node.start_mark.line + 1}: invalid YAML: an alias refers to the "
                              "collection that contains it (a recursive document)")
        active.add(id(node))
        sizes[id(node)] = 1 + sum(expanded(child) for child in _children(node))
        active.discard(id(node))
        return sizes[id(node)]

    if expanded(root) > MAX_NODES:
        raise ConfigError(f"{origin}:1: invalid YAML: the document expands to {expanded(root)} values (through "
                          f"aliases & and *, or its sheer size); the limit is {MAX_NODES}, an assembly has a few "
                          "hundred")


def _check_duplicates(root: yaml.Node, origin: str) -> None:
    """Every key of every mapping is written once (merge keys ``<<`` may be overridden, as YAML intends)."""
    issues: list[ConfigIssue] = []
    _find_duplicates(root, (), origin, issues)
    if issues:
        raise AssemblyError(origin, issues)


def _find_duplicates(node: yaml.Node, path: PathKey, origin: str, issues: list[ConfigIssue]) -> None:
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            line, key = key_node.start_mark.line + 1, (key_node.tag, key_node.value)
            if key in first:
                issues.append(ConfigIssue(f"{origin}:{line}", ".".join((*path, key_node.value)),
                                          f"duplicate key (first written at line {first[key]}); YAML would "
                                          "silently keep only this last value", show_value=False))
            first.setdefault(key, line)
            _find_duplicates(value_node, (*path, key_node.value), origin, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicates(item, (*path, str(index)), origin, issues)


def load_yaml_file(path: str | Path) -> tuple[Any, SourceMap]:
    """Read and parse a YAML file (see :func:`load_yaml_with_lines`): UTF-8 text of at most
    :data:`MAX_FILE_BYTES`; a directory, a FIFO or device, binary or non-UTF-8 content is a
    :class:`ConfigError` naming the file (and the line, where there is one)."""
    path = Path(path)
    return load_yaml_with_lines(_decode(_read_bytes(path), path), str(path))


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; never blocks on a FIFO and never reads more than the size cap."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: is a directory, not a YAML file")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: is not a regular file (a FIFO, socket or device), not a YAML file")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: too large for a YAML configuration (over {MAX_FILE_BYTES // 1024} KiB; "
                          "an assembly is a few KiB)")
    return raw


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 text (a BOM is allowed); binary or otherwise encoded content names its first bad line."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"{path}:1: UTF-16 text; save the file as UTF-8")
    if b"\0" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\0")) + 1
        raise ConfigError(f"{path}:{line}: binary content (a NUL byte), not a YAML text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file "
                          "as UTF-8") from None


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
