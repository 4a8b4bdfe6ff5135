"""The ``evaluate`` stage's saved progress for one metric, so a killed evaluation does not recompute what it
had finished.

A metric's work is cut into units of ``batch_size`` rows of each collection it reads (samples, then reference
images; or the reference images it reconstructs), numbered the same whatever the world size. Each rank runs
its contiguous share of the units not done, and every ``save_every`` units (at once on SIGTERM/SIGUSR1, and
at the end) writes the metric's mergeable state over the units since its last save as
``part_<first>_<stop>.safetensors`` (atomic), then resets the metric. A rerun lists the parts, skips their
units, and the final value comes from the parts merged in unit order: ``"cat"`` states concatenated (the rows
in the order one process would have produced them), ``"sum"`` states added. When computed, the values go to
``result.json`` and the parts are removed.

Exactness: ``"cat"`` states are bit for bit those of one uninterrupted process. ``"sum"`` states are float64
sums whose order of addition follows the parts, so an interrupted run (or another world size or
``save_every``) can differ from an uninterrupted one in the last bits of the float64 sums (relative 1e-15),
as the rank all-reduce of the in-memory evaluation does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rae_framework.engine import (DistContext, PreemptionNotice, RunLogger, atomic_write, atomic_write_text,
                                  broadcast_object, gather_objects, rank_chunks, round_count, signal_name)
from rae_framework.errors import PreemptedError, RAEError

PART_NAME = re.compile(r"part_(\d{6,})_(\d{6,})\.safetensors")
RESULT = "result.json"

Part = tuple[int, int, str]  # (first unit, stop unit, file name)
Feed = Callable[[int], None]  # feed(unit): update the metric with that unit's rows


@dataclass(frozen=True)
class MetricProgress:
    """Where one metric's parts and result live, how often to save, and what stops it."""

    folder: Path
    save_every: int
    notice: PreemptionNotice | None = None
    logger: RunLogger | None = None

    def listing(self) -> tuple[dict[str, float] | None, list[Part]]:
        """``(saved result or None, parts on disk sorted by first unit)``; rank 0 reads it, after removing
        the temp files of a killed write."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*.tmp*"):
            leftover.unlink(missing_ok=True)
        result = self.folder / RESULT
        found = (PART_NAME.fullmatch(path.name) for path in self.folder.iterdir())
        parts = sorted((int(match.group(1)), int(match.group(2)), match.group(0)) for match in found if match)
        return (json.loads(result.read_text()) if result.is_file() else None), parts

    def write_part(self, first: int, stop: int, state: dict[str, torch.Tensor]) -> Part:
        """Atomically store the state of units ``[first, stop)``."""
        name = f"part_{first:06d}_{stop:06d}.safetensors"
        tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
        atomic_write(self.folder / name, lambda temp: save_file(tensors, str(temp)))
        return first, stop, name

    def finish(self, values: dict[str, float], parts: Sequence[Part]) -> None:
        """Keep the computed ``values`` and remove the parts (rank 0, once every rank has merged them)."""
        atomic_write_text(self.folder / RESULT, json.dumps(values, indent=2, sort_keys=True))
        for _, _, name in parts:
            (self.folder / name).unlink(missing_ok=True)

    def log(self, message: str) -> None:
        if self.logger is not None:
            self.logger.info(message)


class PartWriter:
    """This rank's open run of consecutive units, saved as one part when it ends or grows to ``save_every``."""

    def __init__(self, metric, progress: MetricProgress) -> None:
        self.metric, self.progress = metric, progress
        self.first: int | None = None
        self.stop = 0
        self.written: list[Part] = []

    def add(self, unit: int, feed: Feed) -> None:
        """Feed ``unit`` to the metric (closing the open part first if ``unit`` does not continue it)."""
        if self.first is not None and unit != self.stop:
            self.close()
        if self.first is None:
            self.first = unit
        feed(unit)
        self.stop = unit + 1
        if self.stop - self.first >= self.progress.save_every:
            self.close()

    def close(self) -> None:
        """Save the open part (if any) and start afresh."""
        if self.first is None:
            return
        self.written.append(self.progress.write_part(self.first, self.stop, self.metric.state_tensors()))
        self.metric.reset()
        self.first = None


def merged_state(metric, folder: Path, parts: Sequence[Part]) -> dict[str, torch.Tensor]:
    """The parts' states combined in unit order: ``"sum"`` added one part after the other, ``"cat"`` joined."""
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, list[torch.Tensor]] = {name: [] for name, how in metric.state_reductions.items() if how == "cat"}
    for _, _, name in parts:
        for key, value in load_file(str(folder / name)).items():
            if key in rows:
                rows[key].append(value)
            else:
                sums[key] = value if key not in sums else sums[key] + value
    joined = {key: torch.cat([value for value in values if value.numel() > 0] or values[:1])
              for key, values in rows.items()}
    return {**sums, **joined}


def check_cover(parts: Sequence[Part], units: int, folder: Path) -> list[Part]:
    """``parts`` sorted; they must cover units ``[0, units)`` exactly once."""
    ordered, expected = sorted(parts), 0
    for first, stop, name in ordered:
        if first != expected:
            raise RAEError(f"the saved metric states in {folder} do not fit together at unit {expected} ({name}); "
                           f"delete the folder and rerun the same command")
        expected = stop
    if expected != units:
        raise RAEError(f"the saved metric states in {folder} cover {expected} of {units} units")
    return ordered


def evaluate_saved(name: str, metric, units: int, feed: Feed, context: DistContext,
                   progress: MetricProgress) -> dict[str, float]:
    """Metric ``name`` over ``units`` units (``feed(unit)`` updates it with one), continuing from and saving
    into ``progress``; every rank returns the values."""
    result, parts = broadcast_object(progress.listing() if context.is_main else None, context)
    if result is not None:
        progress.log(f"evaluate: {name}: kept the value computed before the interruption")
        return result
    done = {unit for first, stop, _ in parts for unit in range(first, stop)}
    remaining = [unit for unit in range(units) if unit not in done]
    if done:
        progress.log(f"evaluate: {name}: resuming at batch {remaining[0] if remaining else units} of {units} "
                     f"({len(done)} done, saved metric states in {progress.folder})")
    mine = rank_chunks(remaining, context.rank, context.world_size)
    metric.reset()
    writer = PartWriter(metric, progress)
    for index in range(round_count(len(remaining), context.world_size)):
        if index < len(mine):
            writer.add(mine[index], feed)
        if progress.notice is not None and progress.notice.agreed(context):
            writer.close()
            stop_evaluating(name, units, context, progress)
    writer.close()
    parts = check_cover(parts + [part for written in gather_objects(writer.written, context) for part in written],
                        units, progress.folder)
    if parts:  # else nothing to read: the metric keeps its empty state, as an in-memory evaluation would
        metric.load_state_tensors(merged_state(metric, progress.folder, parts))
    values = metric.compute()
    context.barrier()  # every rank has read the parts
    if context.is_main:
        progress.finish(values, parts)
    return values


def stop_evaluating(name: str, units: int, context: DistContext, progress: MetricProgress) -> None:
    """Every rank saved its part: say where a rerun resumes, then raise :class:`PreemptedError`."""
    context.barrier()
    _, parts = progress.listing()
    done = {unit for first, stop, _ in parts for unit in range(first, stop)}
    resume = next((unit for unit in range(units) if unit not in done), units)
    message = (f"evaluate: preempted ({signal_name(progress.notice.received)}) in metric '{name}' at batch "
               f"{resume} of {units}; {len(done)} batches' metric states saved in {progress.folder} (and every "
               f"finished metric in metrics.json). Rerun the same command to resume")
    progress.log(message)
    raise PreemptedError(message, progress.notice.received)
