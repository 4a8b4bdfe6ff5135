"""Malformed assembly files never crash or hang: exit 2 within a second, the file (and line) named, no traceback.

The corpus is tests/data/bad_assemblies/ (see its README: a file ``case.L<n>.yaml`` must be reported at line
``n``); cases that cannot live in git are generated here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from quick import quickly

from rae_framework import cli, yaml_lines

REPOSITORY = Path(__file__).resolve().parents[3]
CORPUS = REPOSITORY / "tests" / "data" / "bad_assemblies"
CASES = sorted(CORPUS.glob("*.yaml"))


def _expected_line(path: Path) -> int | None:
    match = re.search(r"\.L(\d+)\.yaml$", path.name)
    return int(match.group(1)) if match else None


def _validate_in_process(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``rae validate PATH`` in this process, within a second of CPU time and no waiting (see ``quick``)."""
    with quickly():
        code = cli.main(["validate", str(path)])
    return code, capsys.readouterr().err


def _assert_rejected(path: Path, code: int, err: str) -> None:
    assert code == 2, err
    assert str(path) in err
    assert "Traceback" not in err
    line = _expected_line(path)
    if line is not None:
        assert f"{path}:{line}:" in err


def test_the_corpus_is_there():
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[case.name for case in CASES])
def test_corpus_file_in_a_subprocess(path):
    result = subprocess.run([sys.executable, "-m", "rae_framework", "validate", str(path)], capture_output=True,
                            text=True, timeout=60, cwd=REPOSITORY)  # a hang fails here, not forever
    _assert_rejected(path, result.returncode, result.stderr)


@pytest.mark.parametrize("path", CASES, ids=[case.name for case in CASES])
def test_corpus_file_within_a_second(path, capsys):
    cli.main(["validate", str(REPOSITORY / "examples" / "quickstart.yaml")])  # plugins imported: time the file only
    capsys.readouterr()
    code, err = _validate_in_process(path, capsys)
    _assert_rejected(path, code, err)


def test_directory(tmp_path, capsys):
    code, err = _validate_in_process(tmp_path, capsys)
    _assert_rejected(tmp_path, code, err)
    assert "is a directory" in err


def test_fifo_does_not_block(tmp_path, capsys):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    code, err = _validate_in_process(fifo, capsys)
    _assert_rejected(fifo, code, err)
    assert "not a regular file" in err


def test_oversized_file(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text("name: x\n" + "# padding\n" * (yaml_lines.MAX_FILE_BYTES // 10 + 1))
    code, err = _validate_in_process(path, capsys)
    _assert_rejected(path, code, err)
    assert "too large" in err


def test_a_file_at_the_size_cap_still_loads(tmp_path):
    path = tmp_path / "padded.yaml"
    text = "name: x\n"
    path.write_text(text + "#" * (yaml_lines.MAX_FILE_BYTES - len(text)))
    assert yaml_lines.load_yaml_file(path)[0] == {"name": "x"}


def test_unreadable_file(tmp_path, capsys, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("name: x\n")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads mode-000 files: make opening this one fail as it would for a user
        def refuse(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return open(file, *args, **kwargs)
        monkeypatch.setattr(yaml_lines, "open", refuse, raising=False)
    code, err = _validate_in_process(path, capsys)
    _assert_rejected(path, code, err)
    assert "cannot read: Permission denied" in err


def test_the_densest_file_under_the_cap_is_rejected_quickly(tmp_path, capsys):
    path = tmp_path / "dense.yaml"
    path.write_text("name: x\nseed: [" + ",".join(["1"] * (yaml_lines.MAX_FILE_BYTES // 2 - 10)) + "]\n")
    code, err = _validate_in_process(path, capsys)
    _assert_rejected(path, code, err)
    assert "expands to" in err
