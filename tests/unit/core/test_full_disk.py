"""A full disk while writing (ENOSPC) leaves the previous file intact and says which folder and how much is free."""

import errno

import pytest

from rae_framework.errors import DiskFullError
from rae_framework.files import atomic_write, atomic_write_text, full_disk_reported, human_bytes


def _fails_with(code):
    def write(temp):
        temp.write_bytes(b"partial")
        raise OSError(code, "injected at the write call")
    return write


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_keeps_the_previous_file_and_names_the_folder(tmp_path, code):
    target = atomic_write_text(tmp_path / "metrics.json", "old")
    with pytest.raises(DiskFullError) as raised:
        atomic_write(target, _fails_with(code))
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind
    message = str(raised.value)
    assert str(tmp_path) in message and "metrics.json" in message and "free" in message


def test_other_os_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with full_disk_reported(tmp_path, "a file"):
            raise PermissionError(errno.EACCES, "denied")


def test_human_bytes():
    assert human_bytes(999) == "999 B"
    assert human_bytes(1500) == "1.5 kB"
    assert human_bytes(2.5e12) == "2.5 TB"
