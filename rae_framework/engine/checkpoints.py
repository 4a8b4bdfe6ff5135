"""Atomic training checkpoints: weights as safetensors, the rest loadable with ``weights_only=True``.

A checkpoint is a folder ``step_00000100/`` holding ``<name>.safetensors`` per module (model, ema, ...)
and ``state.pt`` (optimiser, scheduler, RNG states, step, data position), and last ``manifest.json`` (each
file's size and sha256: :mod:`~rae_framework.engine.checkpoint_manifest`). It is written into a hidden temp
folder, every file fsync'ed, then renamed into place with ``os.replace`` and the parent fsync'ed: a crash at
any moment leaves either the complete new checkpoint or none, and the older ones untouched; a full disk
removes the temp folder and raises :class:`~rae_framework.errors.DiskFullError`.

Loading checks the files first (the manifest's sizes and hashes; by parsing them for checkpoints written
before manifests), so a checkpoint damaged later (a cut copy, a flipped byte, a deleted file) is reported,
never loaded; :meth:`CheckpointManager.newest_intact` falls back to the previous one and keeps the damaged
folder as ``step_XXXXXXXX.damaged``.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rae_framework.engine.checkpoint_manifest import manifest_problem, read_manifest, write_manifest
from rae_framework.errors import CheckpointDamagedError, RAEError
from rae_framework.files import atomic_write, fsync_path, full_disk_reported

STEP_PATTERN = re.compile(r"^step_(\d{8})$")
STATE_FILE = "state.pt"


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict as contiguous CPU tensors (safetensors refuses shared/strided storage)."""
    return {key: value.detach().cpu().contiguous().clone() for key, value in module.state_dict().items()}


def save_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically write one safetensors file (temp + fsync + ``os.replace``)."""
    atomic_write(path, lambda temp: save_file(tensors, str(temp)))


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """torch, numpy, python and named generator states, in a ``weights_only``-loadable form."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
    }


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    for name, generator in (generators or {}).items():
        generator.set_state(state["generators"][name])


class CheckpointManager:
    """Writes, lists, loads and prunes the step checkpoints of one training stage."""

    def __init__(self, folder: str | Path, keep_last: int = 2, keep_steps: Iterable[int] = ()) -> None:
        self.folder, self.keep_last, self.keep_steps = Path(folder), keep_last, frozenset(keep_steps)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (temp folders are ignored)."""
        if not self.folder.is_dir():
            return []
        found = (STEP_PATTERN.match(path.name) for path in self.folder.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def path(self, step: int) -> Path:
        """Folder of the checkpoint at ``step``."""
        return self.folder / f"step_{step:08d}"

    def latest(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, weights: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> Path:
        """Write checkpoint ``step`` atomically (its manifest last), then keep only the newest ``keep_last``.

        A full disk raises :class:`~rae_framework.errors.DiskFullError` naming the folder and its free space,
        after the temp folder is removed; the previous checkpoints are untouched."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final, temp = self.path(step), self.folder / f".tmp_step_{step:08d}"
        with full_disk_reported(self.folder, f"checkpoint {final.name}"):
            try:
                self._write(temp, step, weights, state)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        fsync_path(self.folder)
        self.prune()
        return final

    @staticmethod
    def _write(temp: Path, step: int, weights: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]) -> None:
        """Every file of checkpoint ``step`` into a fresh ``temp`` folder, each fsync'ed, the manifest last."""
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        for name, tensors in weights.items():
            save_file(tensors, str(temp / f"{name}.safetensors"))
            fsync_path(temp / f"{name}.safetensors")
        with (temp / STATE_FILE).open("wb") as handle:  # a file object: a full disk surfaces as its OSError
            torch.save({**state, "step": step}, handle)
        fsync_path(temp / STATE_FILE)
        write_manifest(temp, step, [*(f"{name}.safetensors" for name in weights), STATE_FILE])
        fsync_path(temp)

    def prune(self) -> None:
        """Delete all but the newest ``keep_last`` checkpoints and those of ``keep_steps`` (checkpoints set
        aside as damaged are not listed, so they neither count nor get deleted)."""
        for step in self.steps()[:-self.keep_last]:
            if step not in self.keep_steps:
                shutil.rmtree(self.path(step), ignore_errors=True)

    def load(self, step: int | None = None, *, verify: bool = True, required: Iterable[str] = (),
             ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """``(weights by name, state)`` of checkpoint ``step`` (default: the latest).

        With ``verify`` the files are first checked against the manifest (size and sha256); a checkpoint
        without one (written before manifests) is checked by parsing. Either way a missing, truncated or
        corrupted file, or a missing weights file of ``required`` (names of modules), raises
        :class:`CheckpointDamagedError` naming it, never returns garbage."""
        step = self.latest() if step is None else step
        if step is None or not self.path(step).is_dir():
            raise RAEError(f"No checkpoint {'found' if step is None else step} in {self.folder}")
        folder = self.path(step)
        names = _checked_files(folder, step, verify, required)
        weights = {Path(name).stem: _parsed(folder / name, load_file)
                   for name in names if name.endswith(".safetensors")}
        return weights, _parsed(folder / STATE_FILE, lambda path: torch.load(path, weights_only=True))

    def newest_intact(self, warn: Callable[[str], None], required: Iterable[str] = (),
                      ) -> tuple[int, dict, dict] | None:
        """``(step, weights, state)`` of the newest checkpoint that loads intact (with the weights of
        ``required``), or None when there is none.

        Each damaged one on the way is reported through ``warn`` (the file and why) and set aside (see
        :meth:`set_aside`); when every checkpoint is damaged, :class:`CheckpointDamagedError` is raised rather
        than silently restarting the stage from step 0."""
        damaged = []
        for step in reversed(self.steps()):
            try:
                return (step, *self.load(step, required=required))
            except CheckpointDamagedError as error:
                kept = self.set_aside(step)
                damaged.append(kept)
                warn(f"checkpoint step {step} is damaged: {error}; kept as {kept}, trying the previous one")
        if damaged:
            raise CheckpointDamagedError(
                f"every checkpoint in {self.folder} is damaged (kept as {', '.join(path.name for path in damaged)}); "
                "put a good step_XXXXXXXX folder back there to resume from it, or rerun the same command to start "
                "this stage again from step 0")
        return None

    def set_aside(self, step: int) -> Path:
        """Rename the checkpoint of ``step`` to ``step_XXXXXXXX.damaged`` (``.damaged-2``, ... when taken): kept
        for inspection, no longer listed, loaded or pruned."""
        base = target = self.path(step).with_name(f"{self.path(step).name}.damaged")
        for index in itertools.count(2):
            if not target.exists():
                break
            target = base.with_name(f"{base.name}-{index}")
        os.replace(self.path(step), target)
        return target


def _checked_files(folder: Path, step: int, verify: bool, required: Iterable[str]) -> list[str]:
    """The files of checkpoint ``folder`` to load: its manifest's, checked against it when ``verify`` (an older
    checkpoint's: its safetensors and ``state.pt``); :class:`CheckpointDamagedError` names the first problem."""
    try:
        manifest = read_manifest(folder)
    except ValueError as error:
        raise CheckpointDamagedError(str(error)) from error
    problem = manifest_problem(folder, manifest, step) if manifest is not None and verify else None
    if problem is not None:
        raise CheckpointDamagedError(problem)
    names = list(manifest["files"]) if manifest is not None else [
        *(path.name for path in sorted(folder.glob("*.safetensors"))), STATE_FILE]
    absent = [f"{name}.safetensors" for name in required if f"{name}.safetensors" not in names]
    if absent:
        raise CheckpointDamagedError(f"{folder / absent[0]} is missing")
    return names


def _parsed(path: Path, parse: Callable[[Path], Any]) -> Any:
    """``parse(path)``, with a missing file or any parse failure as :class:`CheckpointDamagedError`."""
    if not path.is_file():
        raise CheckpointDamagedError(f"{path} is missing")
    try:
        return parse(path)
    except Exception as error:  # noqa: BLE001 - safetensors, pickle and zip readers each raise their own types
        raise CheckpointDamagedError(f"{path} does not parse ({type(error).__name__}: {error})") from error
