"""Fixtures of the reference implementation (see ../shared/fixtures/official/README.md).

The folder comes from ``RAE_OFFICIAL_FIXTURES`` (default ``../shared/fixtures/official`` beside the
repository). A test whose file the folder does not hold is skipped. Tests read sizes from the files, never
from constants: a second fixture set with other configurations exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def fixtures_folder() -> Path:
    """The configured fixture folder (relative paths are taken from the repository root)."""
    configured = Path(os.environ.get("RAE_OFFICIAL_FIXTURES", "../shared/fixtures/official"))
    return configured if configured.is_absolute() else (REPOSITORY_ROOT / configured).resolve()


@pytest.fixture(scope="session")
def official():
    """``official("ddt_head.pt")`` loads a fixture file (weights_only) or skips the test."""
    cache: dict[str, object] = {}

    def load(file_name: str):
        path = fixtures_folder() / file_name
        if not path.exists():
            pytest.skip(f"fixture {file_name} not in {path.parent}")
        if file_name not in cache:
            cache[file_name] = torch.load(path, map_location="cpu", weights_only=True)
        return cache[file_name]

    return load
