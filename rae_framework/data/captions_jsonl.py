"""Captions from a ``captions.jsonl`` (``data.captions``): one JSON object a line per image of the source.

``{"index": i, "caption": "..."}`` for ``source: digits`` (``i`` = the row of scikit-learn's digits, the order
:class:`~rae_framework.data.datasets.DigitsDataset` loads them in) or ``{"file": "class/img.png", "caption":
"..."}`` for ``source: folder`` (the path relative to ``root``). Every image of the source needs exactly one
line; the file is read and checked whole when the caption source is built, so a bad file stops the run before
training with the file and line of the first problem. Captions are looked up by dataset index, so the batch
plan (order, flips, resumption, any world size) is the engine's, unchanged, and a flipped row keeps its caption.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rae_framework.data.config import DataConfig
from rae_framework.data.datasets import dataset_size, list_image_folder, split_indices
from rae_framework.errors import ConfigError


def source_keys(data: DataConfig) -> tuple[str, list]:
    """``(field, keys)``: the JSON field that names an image of ``data``'s source and every image's key in
    dataset order (row indices for the digits, root-relative POSIX paths for a folder)."""
    if data.source == "digits":
        return "index", list(range(dataset_size(data)))
    if data.root is None:
        raise ConfigError("data.root is required when data.source is 'folder'")
    root = Path(data.root)
    return "file", [path.relative_to(root).as_posix() for path in list_image_folder(root)[0]]


def _parse_line(path: Path, number: int, line: str, field: str) -> tuple[object, str]:
    """One line -> ``(key, caption)``; a ConfigError naming ``path:number`` when it is not one."""
    where = f"data.captions: {path}:{number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: not JSON ({error.msg})") from None
    if not isinstance(row, dict) or field not in row or not isinstance(row.get("caption"), str):
        raise ConfigError(f"{where}: expected an object with {field!r} and a string 'caption', got {line[:80]!r}")
    key = row[field]
    if field == "index" and (not isinstance(key, int) or isinstance(key, bool)):
        raise ConfigError(f"{where}: 'index' must be an integer, got {key!r}")
    if field == "file" and not isinstance(key, str):
        raise ConfigError(f"{where}: 'file' must be a path string, got {key!r}")
    return key, row["caption"]


def read_captions(path: str | Path, field: str, keys: Sequence) -> list[str]:
    """The caption of each of ``keys`` (in their order) from the JSON-lines file ``path``; ConfigError with the
    file and line number on bad JSON, an unknown or duplicate image, and for images without a line."""
    path, known = Path(path), {key: position for position, key in enumerate(keys)}
    if not path.is_file():
        raise ConfigError(f"data.captions: {path} is not a file")
    captions: list[str | None] = [None] * len(keys)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            key, caption = _parse_line(path, number, line, field)
            if key not in known:
                raise ConfigError(f"data.captions: {path}:{number}: {field} {key!r} is not an image of the source "
                                  f"({len(keys)} images)")
            if captions[known[key]] is not None:
                raise ConfigError(f"data.captions: {path}:{number}: a second caption for {field} {key!r}")
            captions[known[key]] = caption
    missing = [keys[position] for position, caption in enumerate(captions) if caption is None]
    if missing:
        raise ConfigError(f"data.captions: {path} has no caption for {len(missing)} of {len(keys)} images, "
                          f"e.g. {field} {', '.join(repr(key) for key in missing[:3])}")
    return captions


class JsonlCaptions:
    """The captions of one split's rows, looked up by the plan items' dataset index (flips keep it)."""

    def __init__(self, rows: Sequence[str]) -> None:
        self.rows = list(rows)  # caption of split position i

    @classmethod
    def of(cls, data: DataConfig, split: str = "train") -> JsonlCaptions:
        """The captions of ``data.captions`` for the rows of ``split`` as ``build_dataset`` numbers them."""
        field, keys = source_keys(data)
        every = read_captions(data.captions, field, keys)
        train, holdout = split_indices(len(keys), data.holdout_fraction)
        kept: np.ndarray = train if split == "train" else holdout
        return cls([every[int(index)] for index in kept])

    def captions(self, items: Sequence[tuple[int, bool]], labels: torch.Tensor) -> list[str]:
        return [self.rows[int(item[0])] for item in items]
