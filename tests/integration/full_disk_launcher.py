"""``python full_disk_launcher.py STEP rae-arguments...``: the CLI, with the write of checkpoint STEP's weights
failing as on a full disk (partial bytes, then safetensors' ENOSPC error). For machines where the test cannot
mount a small tmpfs to fill for real."""

from __future__ import annotations

import sys

from safetensors import SafetensorError

from rae_framework import cli
from rae_framework.engine import checkpoints


def failing_at(step: int):
    real_save_file = checkpoints.save_file

    def save_file(tensors, path, *args, **kwargs):
        if f".tmp_step_{step:08d}" in str(path):
            with open(path, "wb") as handle:
                handle.write(b"partial")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save_file(tensors, path, *args, **kwargs)
    return save_file


if __name__ == "__main__":
    checkpoints.save_file = failing_at(int(sys.argv[1]))
    raise SystemExit(cli.main(sys.argv[2:]))
