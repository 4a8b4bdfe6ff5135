"""The README's plugin snippet is complete: written out as a package, it registers, validates and encodes."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from rae_framework import Session
from rae_framework.interfaces import Encoder
from rae_framework.testing.contracts import undescribed_fields

README = Path(__file__).resolve().parents[3] / "README.md"


def snippet_files() -> dict[str, str]:
    """``{"my_plugin/configs.py": source, ...}`` from the python block of the README's plugin section."""
    section = README.read_text(encoding="utf-8").split("## A plugin in 20 lines", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    parts = re.split(r"^# (my_plugin/\w+\.py).*\n", code, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    for name, source in {**snippet_files(), "my_plugin/__init__.py": ""}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("my_plugin.plugin")
    for module in [name for name in sys.modules if name.split(".")[0] == "my_plugin"]:
        del sys.modules[module]


def test_the_snippet_has_the_three_files():
    assert set(snippet_files()) == {"my_plugin/configs.py", "my_plugin/encoder.py", "my_plugin/plugin.py"}


def test_the_snippet_registers_and_encodes(plugin):
    session = Session(entry_points=False, plugins=[("patch_mean", plugin)])
    assert session.plugin_manager.failures() == []
    encoder = session.build("encoder", "patch-mean", {"input_size": 16, "patch_size": 4})
    assert type(encoder).Config is type(encoder.config) and undescribed_fields(encoder.Config) == []
    missing = [name for name in Encoder.__annotations__ if not hasattr(encoder, name)]
    assert missing == []
    tokens = encoder(torch.rand(2, 3, 16, 16))  # (B, N, C)
    assert tokens.shape == (2, encoder.num_tokens, encoder.config.token_dim) == (2, 16, 48)
