"""The manifest of a step checkpoint: the step, a format version, and each file's size and sha256.

``manifest.json`` is the last file written into a checkpoint's temp folder, before the folder is renamed into
place, so a checkpoint that has one is complete as written. On resume :func:`manifest_problem` compares the
files on disk with it: a missing, truncated, extended or corrupted file (a flipped byte anywhere) is named
before anything is loaded. Checkpoints written before manifests existed have none; they are checked by
parsing their files instead (see :mod:`rae_framework.engine.checkpoints`).
"""

from __future__ import annotations

import json
from pathlib import Path

from rae_framework.files import file_sha256, fsync_path

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def write_manifest(folder: Path, step: int, names: list[str]) -> Path:
    """Hash the files ``names`` of ``folder`` (already fsync'ed) into ``folder/manifest.json``, fsync'ed."""
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)} for name in names}
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, "step": step, "files": files}, indent=1))
    fsync_path(path)
    return path


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder`` (None when it has none: an older checkpoint); ValueError when unreadable."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} does not parse ({error})") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"{path} has no 'files' table")
    if any(Path(name).name != name for name in manifest["files"]):
        raise ValueError(f"{path} names a file outside its folder")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {manifest['format_version']}; this framework reads up to "
                         f"{FORMAT_VERSION} (upgrade rae-framework)")
    return manifest


def manifest_problem(folder: Path, manifest: dict, step: int) -> str | None:
    """Why the files of ``folder`` do not match ``manifest`` (naming the file), or None when they all do."""
    if manifest.get("step") != step:
        return f"{folder / MANIFEST_FILE} is for step {manifest.get('step')}, not {step}"
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != expected.get("bytes"):
            cut = "truncated" if size < expected.get("bytes", 0) else "longer than written"
            return f"{path} is {cut}: {size} bytes, the manifest says {expected.get('bytes')}"
        if file_sha256(path) != expected.get("sha256"):
            return f"{path} is corrupted: its sha256 differs from the manifest's"
    return None
