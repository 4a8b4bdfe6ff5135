"""Atomic training checkpoints: weights as safetensors, the rest loadable with ``weights_only=True``.

A checkpoint is a folder ``step_00000100/`` holding ``<name>.safetensors`` per module (model, ema, ...)
and ``state.pt`` (optimiser, scheduler, RNG states, step, data position). It is written into a hidden
temp folder, every file fsync'ed, then renamed into place with ``os.replace`` and the parent fsync'ed:
a crash at any moment leaves either the complete new checkpoint or none, and the older ones untouched.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rae_framework.errors import RAEError
from rae_framework.files import atomic_write, fsync_path

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
        """Write checkpoint ``step`` atomically, then keep only the newest ``keep_last``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final, temp = self.path(step), self.folder / f".tmp_step_{step:08d}"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        for name, tensors in weights.items():
            save_file(tensors, str(temp / f"{name}.safetensors"))
            fsync_path(temp / f"{name}.safetensors")
        torch.save({**state, "step": step}, temp / STATE_FILE)
        fsync_path(temp / STATE_FILE)
        fsync_path(temp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        fsync_path(self.folder)
        self.prune()
        return final

    def prune(self) -> None:
        """Delete all but the newest ``keep_last`` checkpoints and those of ``keep_steps``."""
        for step in self.steps()[:-self.keep_last]:
            if step not in self.keep_steps:
                shutil.rmtree(self.path(step), ignore_errors=True)

    def load(self, step: int | None = None) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """``(weights by name, state)`` of checkpoint ``step`` (default: the latest)."""
        step = self.latest() if step is None else step
        if step is None or not self.path(step).is_dir():
            raise RAEError(f"No checkpoint {'found' if step is None else step} in {self.folder}")
        folder = self.path(step)
        weights = {path.stem: load_file(str(path)) for path in sorted(folder.glob("*.safetensors"))}
        return weights, torch.load(folder / STATE_FILE, weights_only=True)
