"""At the CLI a full disk is exit 1 with the folder and its free space, no traceback: the contract a writer meets
by wrapping its writes in ``full_disk_reported`` (here the sample writer's, on a real small tmpfs)."""

from __future__ import annotations

import errno
import os

import numpy as np
from small_disk import small_disk

from rae_framework import cli
from rae_framework.files import full_disk_reported


def test_a_full_disk_while_writing_samples_exits_1_naming_the_folder(tmp_path, monkeypatch, capsys):
    with small_disk(tmp_path / "samples", 64 * 1024) as disk:
        folder = disk or tmp_path / "samples"

        def write_samples(args):
            with full_disk_reported(folder, "samples shard 00003"):
                if disk is None:  # no tmpfs here: fail as the write call fails on a full disk
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                np.save(folder / "shard_00003.npy", np.zeros((128, 16, 16, 3), dtype=np.uint8))  # 96 kB
            return cli.EXIT_OK

        monkeypatch.setattr(cli, "cmd_sample", write_samples)
        code = cli.main(["sample", str(tmp_path / "run"), "--labels", "1", "--out", str(folder / "grid.png")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILURE == 1
    assert err.startswith(f"error: the disk is full: writing samples shard 00003 into {folder} failed")
    assert "free" in err and "Traceback" not in err
