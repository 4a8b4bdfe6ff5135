"""Test-suite set-up: offline hubs, the torchvision compat step, small thread counts."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rae_framework import compat  # noqa: E402  (must run before torchvision is first imported)

compat.ensure_torchvision_importable()
