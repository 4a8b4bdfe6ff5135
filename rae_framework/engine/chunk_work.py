"""Work cut into chunks that do not depend on the number of processes, so any attempt with any world size
continues what an earlier one finished: the progress of the ``sample`` and ``evaluate`` stages.

A stage keeps its finished chunks under ``checkpoints/<stage>/<input hash>/`` (:func:`progress_folder`): a
changed assembly (or upstream output) gets a new folder and the old ones are removed, so chunks made with
other inputs are never reused. Rank 0 lists what is done and tells the others (:func:`broadcast_object`);
the ranks split what remains in contiguous runs (:func:`rank_chunks`) and step through it in the same
number of rounds (:func:`round_count`), so a per-round collective, e.g. the agreement on a preemption
notice, is reached by every rank.
"""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from rae_framework.engine.distributed import DistContext
from rae_framework.errors import PreemptedError

KEY_CHARS = 16  # hex digits of the input hash that name a progress folder
KEY_NAME = re.compile(rf"[0-9a-f]{{{KEY_CHARS}}}")


def progress_folder(run, stage: str) -> Path:
    """``checkpoints/<stage>/<input hash>/`` of ``run`` (a ``RunState``), created; folders of other input
    hashes (and, when the run starts fresh, this one) are removed by rank 0 first. Every rank returns."""
    root, key = run.checkpoint_dir(stage), run.input_hash(stage)[:KEY_CHARS]
    folder = root / key
    if run.context.is_main:
        stale = [child for child in (root.iterdir() if root.is_dir() else ())
                 if child.is_dir() and KEY_NAME.fullmatch(child.name) and (child.name != key or not run.resume)]
        for child in stale:
            shutil.rmtree(child)
            reason = "starting fresh" if child.name == key else "inputs changed"
            run.logger.info(f"{stage}: {reason}; removed the saved progress in {child}")
        folder.mkdir(parents=True, exist_ok=True)
    run.context.barrier()
    return folder


def rank_chunks(remaining: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous run of the ``remaining`` chunks (runs differ by at most one chunk)."""
    count = len(remaining)
    return list(remaining[count * rank // world_size:count * (rank + 1) // world_size])


def round_count(remaining: int, world_size: int) -> int:
    """Rounds in which every rank handles at most one of its chunks: the longest run of :func:`rank_chunks`."""
    return -(-remaining // world_size)


def broadcast_object(value: Any, context: DistContext) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not context.enabled:
        return value
    holder = [value if context.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(value: Any, context: DistContext) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not context.enabled:
        return [value]
    values: list[Any] = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values


def signal_name(received: int | None) -> str:
    """``SIGTERM`` / ``SIGUSR1`` for a noted signal; what the other ranks say when this one got none."""
    return signal.Signals(received).name if received is not None else "another rank's notice"


def stop_if_noticed(notice, context: DistContext, logger, stage: str, done: str) -> None:
    """After a stage's work: when a notice arrived after its last per-batch check (during an assembly or a
    final computation), stop now (every rank together) rather than let the next stage run into the kill; the
    rerun finds this stage's work saved. ``done`` says what was finished."""
    if notice.agreed(context):
        message = (f"{stage}: preempted ({signal_name(notice.received)}) after {done}. Rerun the same command "
                   f"to go on")
        logger.info(message)
        raise PreemptedError(message, notice.received)
