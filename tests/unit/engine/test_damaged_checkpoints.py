"""Damaged checkpoints, with real files: a cut safetensors file, a flipped byte, a deleted state.pt, a
checkpoint from before manifests; and a full disk (a real small tmpfs where the test may mount one)."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from safetensors import SafetensorError
from small_disk import resize, small_disk
from test_stage2 import make_stage, run  # the stage-2 loop on test doubles

from rae_framework.engine import checkpoints
from rae_framework.engine.checkpoint_manifest import FORMAT_VERSION, MANIFEST_FILE
from rae_framework.engine.checkpoints import STATE_FILE, CheckpointManager
from rae_framework.errors import CheckpointDamagedError, DiskFullError
from rae_framework.files import file_sha256, full_disk_errno, full_disk_reported


def weights(value: float, size: int = 64) -> dict[str, dict[str, torch.Tensor]]:
    return {"model": {"w": torch.full((size,), value)}, "ema": {"w": torch.full((size,), -value)}}


def saved(tmp_path, steps=(1, 2, 3), keep_last=3) -> CheckpointManager:
    manager = CheckpointManager(tmp_path, keep_last=keep_last)
    for step in steps:
        manager.save(step, weights(float(step)), {"extra": torch.tensor(step)})
    return manager


def newest_intact(manager):
    warnings = []
    return manager.newest_intact(warnings.append, required=("model", "ema")), warnings


def truncate(path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def flip_middle_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_manifest_records_every_file_with_its_size_and_sha256(tmp_path):
    folder = saved(tmp_path, steps=(4,)).path(4)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["step"] == 4
    assert sorted(manifest["files"]) == ["ema.safetensors", "model.safetensors", STATE_FILE]
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda folder: truncate(folder / "model.safetensors"), "model.safetensors is truncated"),
    (lambda folder: flip_middle_byte(folder / "model.safetensors"), "model.safetensors is corrupted"),
    (lambda folder: (folder / STATE_FILE).unlink(), f"{STATE_FILE} is missing"),
    (lambda folder: (folder / MANIFEST_FILE).write_text("{\"files\": "), f"{MANIFEST_FILE} does not parse"),
], ids=["truncated", "flipped-byte", "missing-state", "cut-manifest"])
def test_a_damaged_latest_checkpoint_is_named_set_aside_and_the_previous_one_loads(tmp_path, damage, reason):
    manager = saved(tmp_path)
    damage(manager.path(3))
    with pytest.raises(CheckpointDamagedError, match=reason):
        manager.load(3)
    (step, loaded, state), warnings = newest_intact(manager)
    assert step == 2 and state["step"] == 2 and torch.equal(loaded["model"]["w"], torch.full((64,), 2.0))
    assert len(warnings) == 1 and reason in warnings[0] and str(manager.path(3)) in warnings[0]
    assert manager.steps() == [1, 2] and (tmp_path / "step_00000003.damaged").is_dir()  # kept, not listed


def test_a_flipped_byte_in_the_state_is_found_too(tmp_path):
    manager = saved(tmp_path, steps=(1, 2))
    flip_middle_byte(manager.path(2) / STATE_FILE)
    (step, _, _), warnings = newest_intact(manager)
    assert step == 1 and f"{STATE_FILE} is corrupted" in warnings[0]


def test_when_every_checkpoint_is_damaged_the_error_says_so_and_keeps_them(tmp_path):
    manager = saved(tmp_path, steps=(1, 2))
    for step in (1, 2):
        truncate(manager.path(step) / "ema.safetensors")
    with pytest.raises(CheckpointDamagedError, match="every checkpoint .* is damaged") as raised:
        newest_intact(manager)
    assert "step_00000001.damaged" in str(raised.value) and "step 0" in str(raised.value)
    assert manager.steps() == [] and newest_intact(manager) == (None, [])  # the rerun starts from step 0


def test_damaged_folders_neither_count_for_keep_last_nor_get_pruned(tmp_path):
    manager = saved(tmp_path, steps=(1, 2), keep_last=2)
    truncate(manager.path(2) / "model.safetensors")
    assert newest_intact(manager)[0][0] == 1
    manager.save(2, weights(2.0), {})  # the resumed run writes step 2 again, then 3
    truncate(manager.path(2) / "model.safetensors")
    assert newest_intact(manager)[0][0] == 1
    manager.save(2, weights(2.0), {})
    manager.save(3, weights(3.0), {})
    assert manager.steps() == [2, 3]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "step_00000002", "step_00000002.damaged", "step_00000002.damaged-2", "step_00000003"]


def test_a_checkpoint_without_manifest_still_loads_and_is_checked_by_parsing(tmp_path):
    manager = saved(tmp_path, steps=(1, 2))
    for step in (1, 2):
        (manager.path(step) / MANIFEST_FILE).unlink()  # as written before manifests existed
    loaded, state = manager.load(2)
    assert state["step"] == 2 and torch.equal(loaded["ema"]["w"], torch.full((64,), -2.0))
    truncate(manager.path(2) / "model.safetensors", keep=0.9)
    (step, _, _), warnings = newest_intact(manager)
    assert step == 1 and "model.safetensors does not parse" in warnings[0]


def test_an_old_checkpoint_missing_a_module_or_its_state_is_damaged(tmp_path):
    manager = saved(tmp_path, steps=(1, 2, 3))
    for step in (1, 2, 3):
        (manager.path(step) / MANIFEST_FILE).unlink()
    (manager.path(3) / STATE_FILE).unlink()
    (manager.path(2) / "ema.safetensors").unlink()
    (step, _, _), warnings = newest_intact(manager)
    assert step == 1 and f"{STATE_FILE} is missing" in warnings[0] and "ema.safetensors is missing" in warnings[1]


# --- a full disk -------------------------------------------------------------------------------------------
def _inject_enospc(monkeypatch, target: str) -> None:
    """Where no tmpfs can be mounted: the write call of ``target`` ('weights' or 'state') fails as a full disk
    makes it fail (safetensors' message, torch.save's OSError)."""
    if target == "weights":
        def save_file(tensors, path):
            open(path, "wb").write(b"partial")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        monkeypatch.setattr(checkpoints, "save_file", save_file)
    else:
        def save(obj, handle):
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(checkpoints.torch, "save", save)


@pytest.mark.parametrize("target", ["weights", "state"])
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, target):
    size = 256 * 1024
    with small_disk(tmp_path / "disk", size) as disk:
        folder = (disk or tmp_path / "disk") / "train_denoiser"
        manager = CheckpointManager(folder, keep_last=2)
        manager.save(1, weights(1.0), {"big": torch.zeros(8)})
        big = {"weights": (weights(2.0, size // 4), {}), "state": (weights(2.0), {"big": torch.zeros(size // 4)})}
        if disk is None:
            _inject_enospc(monkeypatch, target)
        with pytest.raises(DiskFullError) as raised:
            manager.save(2, *big[target])
        message = str(raised.value)
        assert str(folder) in message and "checkpoint step_00000002" in message and "free" in message
        assert [path.name for path in folder.iterdir()] == ["step_00000001"]  # the temp folder is gone
        assert manager.load()[1]["step"] == 1
        if disk is not None:  # space freed: the same save now succeeds
            resize(disk, 4 * size)
            manager.save(2, *big[target])
            assert manager.steps() == [1, 2] and manager.load()[1]["step"] == 2


def test_an_inner_report_passes_an_outer_block_unchanged(tmp_path):
    with pytest.raises(DiskFullError, match="into inner failed"):
        with full_disk_reported(tmp_path, "outer things"):
            with full_disk_reported("inner", "inner things"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_errno_finds_the_errno_behind_native_writers_errors():
    try:
        try:
            raise OSError(errno.EDQUOT, "quota")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    except RuntimeError as chained:
        assert full_disk_errno(chained) == errno.EDQUOT
    assert full_disk_errno(SafetensorError("I/O error: No space left on device (os error 28)")) == errno.ENOSPC
    assert full_disk_errno(OSError("98304 requested and 65408 written")) == errno.ENOSPC  # np.save's short write
    assert full_disk_errno(RuntimeError("unexpected pos 704 vs 598")) is None
    assert full_disk_errno(OSError(errno.EACCES, "denied")) is None


# --- the training loop -------------------------------------------------------------------------------------
def test_the_loop_stops_when_every_checkpoint_is_damaged_and_a_rerun_starts_over(tmp_path):
    losses = []
    run(tmp_path, make_stage(), on_step=lambda step, loss: losses.append(loss))  # checkpoints at 3 and 6
    for step in (3, 6):
        flip_middle_byte(tmp_path / "ckpt" / f"step_{step:08d}" / "model.safetensors")
    with pytest.raises(CheckpointDamagedError, match="every checkpoint"):
        run(tmp_path, make_stage())
    log = (tmp_path / "run" / "log.txt").read_text()
    assert log.count("is corrupted: its sha256 differs") == 2
    again = []
    run(tmp_path, make_stage(), on_step=lambda step, loss: again.append(loss))  # from step 0, as asked
    assert again == losses
