"""Reads back what an offline W&B run wrote: its ``run-<id>.wandb`` file (wandb's transaction log: a LevelDB
log of protobuf ``Record`` messages) and its ``files/`` folder. wandb 0.31 ships no reader of its own.

wandb's core process writes the log asynchronously: ``run.finish()`` can return before the file holds the
run, so the reader waits (a few seconds at most) for each run's exit record."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768  # LevelDB log block; a record header (crc32, length, type) never straddles two blocks
HEADER = 7  # ":W&B" + 2 magic bytes + version byte, at the start of the file
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """One ``offline-run-*`` folder."""

    folder: Path
    run_id: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per logged row, "a/b.c" keys
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    step_metrics: dict[str, str] = field(default_factory=dict)  # define_metric: metric or glob -> its x axis
    exit_code: int | None = None

    def images(self) -> list[Path]:
        """The image files under ``files/media/images``."""
        return sorted((self.folder / "files" / "media" / "images").rglob("*.png"))


def offline_runs(run_dir: Path, timeout: float = 30.0) -> list[OfflineRun]:
    """Every offline run under ``run_dir/wandb``, oldest first, once each is complete (has its exit record)."""
    return [finished_run(folder, timeout) for folder in sorted((Path(run_dir) / "wandb").glob("offline-run-*"))]


def finished_run(folder: Path, timeout: float) -> OfflineRun:
    """:func:`read_offline_run` once the log holds the exit record (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_offline_run(folder)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def read_offline_run(folder: Path) -> OfflineRun:
    """Parse the run's ``.wandb`` file."""
    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.project = record.run.run_id, record.run.project
            run.config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            run.config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(item): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "artifact":
            run.artifacts.append((record.artifact.name, record.artifact.type))
        elif kind == "metric" and record.metric.step_metric:
            run.step_metrics[record.metric.glob_name or record.metric.name] = record.metric.step_metric
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def records(path: Path) -> Iterator[Any]:
    """The protobuf records of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B" or not data, f"{path} is not a W&B transaction log"
    position, pending = HEADER, b""
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        if left < 7:  # block trailer padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:  # zero padding up to the end of the block
            position += left
            continue
        if position + 7 + length > len(data):  # still being written
            return
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key
