"""Fixtures of the tracker tests: a session with the built-in trackers, a small picture, and an environment
where no tracker can reach a server or a user's credentials."""

from __future__ import annotations

import numpy as np
import pytest

from rae_framework import Session

@pytest.fixture(scope="session")
def session() -> Session:
    return Session()


@pytest.fixture
def grid() -> np.ndarray:
    """An ``(8, 16, 3)`` uint8 picture with distinct pixels."""
    return (np.arange(8 * 16 * 3) % 251).astype(np.uint8).reshape(8, 16, 3)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No W&B key or mode, no MLflow URI from the environment; HOME in the test's folder."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "MLFLOW_TRACKING_URI",
                 "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
