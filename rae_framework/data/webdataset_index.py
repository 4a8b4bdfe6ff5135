"""An index over webdataset tar shards, so that sample ``i`` (the ``i``-th sample in shard order) is read by
random access and the engine's ``(index, flip)`` batch plan works on shards unchanged.

The shards are scanned once: the members' headers are read with the standard library's ``tarfile`` (as
webdataset itself reads tars), files are skipped and grouped into samples by webdataset's own rules
(``webdataset.tariterators.group_by_keys`` over ``base_plus_ext`` keys: a sample is a run of consecutive
members with one key), and each sample's image and caption member are kept as ``(offset, size)`` in its
shard. The index (a small ``.npz``, 36 bytes a sample) is cached beside the first shard under a name keyed
by the shards' identity (names, sizes, mtimes) and the chosen keys, and rebuilt when any of them changes.
Torch-free (``rae validate`` counts samples with it); webdataset is imported only when a scan is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rae_framework.errors import ConfigError

INDEX_VERSION = 1
META = "__"  # webdataset skips top-level members named __...__ (tariterators.meta_prefix / meta_suffix)


def expand_shards(shards: str | list[str], where: str = "data.shards") -> list[Path]:
    """The shard files of ``shards`` (brace patterns expanded with ``braceexpand`` and ``::`` joining patterns,
    as webdataset's ``expand_urls`` does, without importing it and torch; a list is taken item by item); a
    :class:`ConfigError` naming ``where`` when a pattern matches no file."""
    from braceexpand import braceexpand

    patterns = [shards] if isinstance(shards, str) else list(shards)
    paths = [Path(url).expanduser() for pattern in patterns for part in pattern.split("::")
             for url in braceexpand(part)]
    missing = [str(path) for path in paths if not path.is_file()]
    if not paths or missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ConfigError(f"{where}: no shards match {shards!r}" if not paths or len(missing) == len(paths)
                          else f"{where}: {len(missing)} of {len(paths)} shards are missing: {shown}")
    return paths


def shard_identity(paths: list[Path]) -> list[list[Any]]:
    """What the data of the shards depends on: ``[name, size, mtime_ns]`` for each (for cache keys)."""
    return [[str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] for path in paths]


@dataclass(frozen=True)
class CaptionKey:
    """Where a sample's caption is: the member with extension ``ext``, and for JSON the ``field`` in it."""

    ext: str
    field: str | None = None

    @classmethod
    def parse(cls, text: str) -> CaptionKey:
        """``'txt'`` (the member's text) or ``'json:FIELD'`` (a field of the sample's JSON member)."""
        ext, _, field = text.partition(":")
        if ext == "json" and not field:
            raise ConfigError(f"data.caption_key: {text!r} names a JSON member; say which field: 'json:caption'")
        return cls(ext.lower(), field or None)

    def text(self, raw: bytes, where: str) -> str:
        """The caption of the member's bytes."""
        if self.field is None:
            return raw.decode("utf-8").strip()
        value = json.loads(raw).get(self.field)
        if not isinstance(value, str):
            raise ConfigError(f"data.caption_key: {where} has no string field {self.field!r} in its JSON")
        return value


@dataclass(frozen=True)
class ShardIndex:
    """Sample ``i`` lives in ``paths[shard[i]]``: image bytes at ``image[i] = (offset, size)``, caption bytes at
    ``caption[i]``."""

    paths: tuple[Path, ...]
    shard: np.ndarray    # (N,) int32
    image: np.ndarray    # (N, 2) int64
    caption: np.ndarray  # (N, 2) int64

    def __len__(self) -> int:
        return len(self.shard)

    def read(self, index: int, member: str) -> bytes:
        """The bytes of sample ``index``'s ``member`` ('image' or 'caption'): one seek and one read."""
        offset, size = (int(value) for value in getattr(self, member)[index])
        with open(self.paths[int(self.shard[index])], "rb") as file:
            file.seek(offset)
            return file.read(size)


def _members(path: Path) -> Iterator[dict[str, Any]]:
    """The regular members of one tar as webdataset's file samples, with ``data = (offset, size)``."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                name = info.name
                if not info.isreg() or ("/" not in name and name.startswith(META) and name.endswith(META)):
                    continue
                yield {"fname": name, "data": (info.offset_data, info.size), "__url__": str(path)}
    except (tarfile.TarError, OSError) as error:
        raise ConfigError(f"data.shards: {path} is not a readable tar file ({error})") from None


def _pick(sample: dict[str, Any], exts: list[str]) -> tuple[int, int] | None:
    """``(offset, size)`` of the sample's first member among ``exts``, None without one."""
    return next((sample[ext] for ext in exts if ext in sample), None)


def scan_shard(path: Path, image_exts: list[str], caption: CaptionKey) -> np.ndarray:
    """``(n, 4)`` int64 ``[image offset, image size, caption offset, caption size]`` of the shard's samples in
    webdataset's order; a sample without an image or a caption is a :class:`ConfigError` naming it."""
    from webdataset.tariterators import group_by_keys

    rows = []
    for sample in group_by_keys(_members(path)):
        image, text = _pick(sample, image_exts), _pick(sample, [caption.ext])
        for found, what, wanted in ((image, "image", "data.image_key " + ";".join(image_exts)),
                                    (text, "caption", f"data.caption_key {caption.ext}")):
            if found is None:
                members = sorted(key for key in sample if not key.startswith("__"))
                raise ConfigError(f"{wanted}: sample '{sample['__key__']}' of {path} has no {what} member "
                                  f"(it has {', '.join(members) or 'none'})")
        rows.append([*image, *text])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def index_file(paths: list[Path], image_key: str, caption_key: str) -> Path:
    """Where the index of these shards (and keys) is cached: beside the first shard, named by their hash."""
    identity = {"version": INDEX_VERSION, "shards": shard_identity(paths), "image": image_key, "caption": caption_key}
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    return paths[0].parent / f".rae-wds-index-{digest}.npz"


def build_index(paths: list[Path], image_key: str, caption_key: str) -> ShardIndex:
    """Scan the shards (one pass over their headers) into a :class:`ShardIndex`."""
    exts, caption = [ext.lower() for ext in image_key.split(";") if ext], CaptionKey.parse(caption_key)
    parts = [scan_shard(path, exts, caption) for path in paths]
    rows = np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)
    if not len(rows):
        raise ConfigError(f"data.shards: the {len(paths)} shard(s) hold no samples")
    shard = np.repeat(np.arange(len(paths), dtype=np.int32), [len(part) for part in parts])
    return ShardIndex(tuple(paths), shard, rows[:, :2].copy(), rows[:, 2:].copy())


def _save(index: ShardIndex, target: Path) -> None:
    """Write atomically (temp file + rename); a read-only shard folder only means no cache."""
    temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            np.savez(file, shard=index.shard, image=index.image, caption=index.caption)
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)


def cached_index(shards: str | list[str], image_key: str, caption_key: str) -> ShardIndex | None:
    """The cached index of unchanged ``shards``, or None when they were not scanned yet (no webdataset, no torch)."""
    paths = expand_shards(shards)
    cached = index_file(paths, image_key, caption_key)
    if not cached.is_file():
        return None
    with np.load(cached) as arrays:
        return ShardIndex(tuple(paths), arrays["shard"], arrays["image"], arrays["caption"])


def load_index(shards: str | list[str], image_key: str, caption_key: str) -> ShardIndex:
    """The index of ``shards``: read from its cache file when the shards are unchanged, else scanned and cached."""
    found = cached_index(shards, image_key, caption_key)
    if found is not None:
        return found
    paths = expand_shards(shards)
    cached = index_file(paths, image_key, caption_key)
    index = build_index(paths, image_key, caption_key)
    _save(index, cached)
    return index


def data_index(data: Any) -> ShardIndex:
    """The index of a ``webdataset`` DataConfig's shards."""
    return load_index(data.shards, data.image_key, data.caption_key)
