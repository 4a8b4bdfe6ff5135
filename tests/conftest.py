"""Test-suite set-up: offline hubs, the torchvision compat step, small thread counts."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rae_framework import compat  # noqa: E402  (must run before torchvision is first imported)

compat.ensure_torchvision_importable()


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker's torch gets its share of the cores instead of all of them (the
    workers run side by side; two torch pools of every core would oversubscribe the machine)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items) -> None:
    """The files with the longest end-to-end tests first (stable otherwise): under ``--dist loadfile`` a long
    file handed out last would run alone at the end while the other workers idle. A slow test counts its
    ``@pytest.mark.slow(seconds=...)`` estimate (default 10 s), any other test nothing."""
    seconds: dict = {}
    for item in items:
        marker = item.get_closest_marker("slow")
        seconds[item.path] = seconds.get(item.path, 0) + (marker.kwargs.get("seconds", 10) if marker else 0)
    items.sort(key=lambda item: -seconds[item.path])
