"""The example plugins (examples/third_party_*) installed with pip into their own folder, and run from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def install_template(name: str, root: Path) -> Path:
    """pip-install ``examples/<name>`` (from a copy: pip builds in the source tree) into ``root/site``; the
    copy, with the template's tests, is ``root/src``."""
    source, target = root / "src", root / "site"
    shutil.copytree(REPOSITORY / "examples" / name, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                             "--quiet", "--target", str(target), str(source)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return target


def run(args: list[str], pythonpath: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` with the installed template importable (and discoverable by its entry point)."""
    environment = {**os.environ, "PYTHONPATH": str(pythonpath), "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=300)
