"""Process-group handling: the same loops run single-process or under ``torchrun`` with DDP.

gloo on CPU, nccl on CUDA. Rank 0 logs and writes checkpoints; every rank computes its shard of each
global batch (see :class:`rae_framework.data.datasets.BatchPlan`), statistics and metrics are reduced.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group with more than one process is active."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op single-process)."""
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks (in place for the process group; returned for chaining)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank; ``value`` itself single-process."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def average_gradients(self, parameters) -> None:
        """Average ``.grad`` over ranks, for modules trained outside DDP (the stage-1 discriminator)."""
        if not self.enabled:
            return
        for param in parameters:
            if param.grad is not None:
                dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                param.grad.div_(self.world_size)


def default_device() -> torch.device:
    """The local CUDA device under torchrun when available, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(device: torch.device | None = None) -> DistContext:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1), else single."""
    device = device or default_device()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(0, 1, device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
        atexit.register(leave_process_group)
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def leave_process_group() -> None:
    """Destroy the process group (at exit, registered by :func:`init_distributed`). Left to the interpreter's
    finalisation, gloo's threads were destroyed while joinable, and a rank that had finished its work aborted
    with "terminate called without an active exception" (SIGABRT), failing the torchrun job."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistContext) -> nn.Module:
    """DDP around ``model`` when distributed (broadcasting rank 0's weights), else the model itself."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's wrapper
            model = model._orig_mod
        else:
            return model


def no_sync(model: nn.Module, skip: bool):
    """DDP's ``no_sync`` for the micro-batches before the last one of an accumulation step."""
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()
