"""Where one DiT^DH-S training step spends its time on this machine, phase by phase.

    python bench/profile_step.py [--batch 4] [--repeats 3] [--bf16] [--threads N]

The step is the engine's (stage 2): take a batch of latents (``data``: gather rows of an in-memory latent
table, as the latent cache hands them out), draw noise, times and label drops keyed by the step (``draws``),
the flow loss (``forward``), ``backward``, the global-norm clip at 1.0 (``clip``), AdamW (``optimizer``, the
implementation ``build_optimizer`` picks; the foreach kernel is timed beside it for comparison) and the EMA
update (``ema``). Each phase is timed separately with ``time.perf_counter`` (median over the repeats after a
warm-up step); the matmul peak of the same dtype is printed as the yardstick for forward + backward, with the
step's FLOPs from ``torch.utils.flop_counter``. Print the load average with the figures: on a shared machine
wall times stretch, the phases' shares much less.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
import statistics
import sys
import time
from collections.abc import Callable

import torch

import rae_framework
from rae_framework.engine import EMA, OptimizerConfig, build_optimizer, clip_gradients, draw_step, step_generator
from rae_stages.train_denoiser import STREAM_STAGE2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import counted_flops  # noqa: E402  (this folder's shared helpers)

LATENT = (768, 16, 16)
TABLE_ROWS = 64  # latents in the in-memory table the batches are gathered from


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="dit-dh-s", help="dit-dh preset (default dit-dh-s)")
    parser.add_argument("--batch", type=int, default=4, help="training batch (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (median per phase)")
    parser.add_argument("--bf16", action="store_true", help="forward under bf16 autocast")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


class Step:
    """The engine's training step split into phases that can be timed one by one."""

    def __init__(self, model: torch.nn.Module, args: argparse.Namespace) -> None:
        self.model, self.batch, self.index = model.train(False), args.batch, 0
        self.dtype = torch.bfloat16 if args.bf16 else None
        self.schedule = rae_framework.build("schedule", "shifted-flow", {"latent_shape": list(LATENT)})
        self.optimizer = build_optimizer(model.parameters(), OptimizerConfig(lr=2e-4))
        self.foreach = build_optimizer(model.parameters(), OptimizerConfig(lr=2e-4, implementation="foreach"))
        self.ema = EMA(model, 0.9995)
        self.table = torch.randn(TABLE_ROWS, *LATENT)  # (R, C, h, w)
        self.labels = torch.randint(0, model.num_classes, (TABLE_ROWS,))

    def data(self) -> None:
        rows = torch.arange(self.index * self.batch, (self.index + 1) * self.batch) % TABLE_ROWS
        self.x, self.y = self.table[rows].clone(), self.labels[rows]  # (B, C, h, w), (B,)

    def draws(self) -> None:
        generator = step_generator(0, STREAM_STAGE2, self.index)
        self.drawn = draw_step(self.schedule, generator, self.batch, LATENT, 0.1)
        self.y = torch.where(self.drawn.drop, torch.full_like(self.y, self.model.num_classes), self.y)

    def forward(self) -> None:
        with torch.autocast("cpu", dtype=self.dtype) if self.dtype else contextlib.nullcontext():
            self.loss = self.schedule.loss_at(self.model, self.x, self.y, self.drawn.noise, self.drawn.t).mean()

    def backward(self) -> None:
        self.loss.backward()

    def clip(self) -> None:
        clip_gradients(self.model.parameters(), 1.0)

    def optimizer_step(self) -> None:
        self.optimizer.step()

    def optimizer_foreach(self) -> None:
        """The foreach kernel on the same gradients, for comparison (a second update: harmless for timing)."""
        self.foreach.step()

    def ema_update(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        self.index += 1

    def phases(self) -> dict[str, Callable[[], None]]:
        """Name -> phase, in the order of a step."""
        return {"data": self.data, "draws": self.draws, "forward": self.forward, "backward": self.backward,
                "clip": self.clip, "optimizer (fused)": self.optimizer_step,
                "optimizer (foreach, for comparison)": self.optimizer_foreach, "ema": self.ema_update}


def timed_step(step: Step) -> dict[str, float]:
    """Seconds of each phase of one step."""
    seconds = {}
    for name, phase in step.phases().items():
        start = time.perf_counter()
        phase()
        seconds[name] = time.perf_counter() - start
    return seconds


def fwd_bwd_flops(step: Step) -> int:
    """FLOPs of one forward + backward, counted during a whole warm-up step."""
    step.data(), step.draws()
    flops = counted_flops(lambda: (step.forward(), step.backward()))
    step.clip(), step.optimizer_step(), step.optimizer_foreach(), step.ema_update()
    return flops


def matmul_peak(dtype: torch.dtype, size: int = 2048) -> float:
    """GFLOP/s of a square matmul (best of 3 after a warm-up)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(3))
    return 2 * size**3 / best / 1e9


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def print_table(medians: dict[str, float], flops: int, peak: float) -> None:
    """The breakdown as a Markdown table; shares are of the step without the comparison row."""
    total = sum(value for name, value in medians.items() if "comparison" not in name)
    print("| phase | ms | share of the step |\n| --- | --- | --- |")
    for name, value in medians.items():
        share = "" if "comparison" in name else f"{value / total:.1%}"
        print(f"| {name} | {value * 1e3:.0f} | {share} |")
    fwd_bwd = medians["forward"] + medians["backward"]
    print(f"| whole step | {total * 1e3:.0f} | 100% |")
    print(f"forward + backward: {flops / 1e12:.2f} TFLOP, {flops / fwd_bwd / 1e9:.0f} GFLOP/s = "
          f"{flops / fwd_bwd / 1e9 / peak:.0%} of the matmul peak {peak:.0f} GFLOP/s")


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Profile and print; returns the median seconds per phase."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = rae_framework.build("denoiser", "dit-dh", preset=args.preset)
    peak = matmul_peak(torch.bfloat16 if args.bf16 else torch.float32)
    print(f"{args.preset}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, batch {args.batch}, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    step = Step(model, args)
    flops = fwd_bwd_flops(step)
    runs = [timed_step(step) for _ in range(args.repeats)]
    medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    print_table(medians, flops, peak)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return medians


if __name__ == "__main__":
    main()
