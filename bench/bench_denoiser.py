"""Benchmark of the DiT-DH-S denoiser on this machine's CPU.

Prints, in one run:

* the measured matmul peak (fp32 and bf16) of this machine, as the yardstick;
* DiT-DH-S forward+backward step time at 768x16x16 latents (batch 8), fp32 and under bf16 autocast, with the
  achieved GFLOP/s (FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``, including attention) and
  the ratio to the matmul peak of the same dtype;
* the sampling time per image for 50-step Euler with classifier-free guidance (the ``rae_flow`` ``euler``
  sampler, ``cfg`` guidance and ``shifted-flow`` schedule), in fp32 and under bf16 autocast.

Usage: ``python bench/bench_denoiser.py [--quick] [--threads N]``. The FLOP-counting call is the warm-up.
``--quick`` times one training step per dtype and a 3-point sampling grid (2 guided evaluations), projecting
the 50-step time from it. The timings share the CPU with whatever else runs: check the load first.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import counted_flops  # noqa: E402  (this folder's shared helpers)

LATENT = (768, 16, 16)
DTYPES = (("fp32", None), ("bf16", torch.bfloat16))


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run: fewer repeats, 3-point sampling grid")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--preset", default="dit-dh-s", help="dit-dh preset to time (default dit-dh-s)")
    parser.add_argument("--batch", type=int, default=8, help="training batch (default 8)")
    parser.add_argument("--sample-batch", type=int, default=4, help="images per sampling run (default 4)")
    parser.add_argument("--cfg-scale", type=float, default=3.0, help="CFG scale, guided at every step")
    return parser.parse_args()


def autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16 CPU autocast, or nothing for fp32."""
    return torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()


def seconds_of(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls (the caller has warmed it up)."""
    return statistics.median(seconds_of(fn) for _ in range(repeats))


def matmul_peak(dtype: torch.dtype, size: int, repeats: int) -> float:
    """Achieved GFLOP/s of a square ``size`` matmul in ``dtype`` (best of ``repeats`` after a warm-up)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    return 2 * size ** 3 / min(seconds_of(lambda: a @ b) for _ in range(repeats)) / 1e9


def training_step(model: torch.nn.Module, batch: int, dtype: torch.dtype | None) -> Callable[[], None]:
    """One forward+backward of the flow loss's shape on random latents (gradients reset each call)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *LATENT, generator=generator)  # (B, C, h, w)
    t = torch.rand(batch, generator=generator)
    y = torch.randint(0, model.num_classes, (batch,), generator=generator)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(dtype):
            loss = (model(x, t, y).float() - x).square().mean()
        loss.backward()

    return step


def sampling_run(model: torch.nn.Module, args: argparse.Namespace, num_steps: int,
                 dtype: torch.dtype | None) -> Callable[[], int]:
    """A callable sampling ``--sample-batch`` latents with rae_flow's Euler + CFG; returns the NFE."""
    session = rae_framework.Session()
    schedule = session.build("schedule", "shifted-flow", {"latent_shape": list(LATENT)}, preset="shifted-flow")
    sampler = session.build("sampler", "euler", {"num_steps": num_steps})
    guidance = session.build("guidance", "cfg", {"scale": args.cfg_scale, "t_min": 0.0, "t_max": 1.0})
    labels = torch.arange(args.sample_batch) % model.num_classes
    noise = torch.randn(args.sample_batch, *LATENT, generator=torch.Generator().manual_seed(1))

    def run() -> int:
        with torch.no_grad(), autocast(dtype):
            return sampler.sample(guidance.velocity(model, labels), noise, schedule).num_function_evals

    return run


def report_training(model: torch.nn.Module, args: argparse.Namespace, peaks: dict[str, float]) -> None:
    """Step time, achieved GFLOP/s and the ratio to the matmul peak, per dtype."""
    model.train()
    for label, dtype in DTYPES:
        step = training_step(model, args.batch, dtype)
        flops = counted_flops(step)  # also the warm-up call
        seconds = median_seconds(step, repeats=1 if args.quick else 3)
        achieved = flops / seconds / 1e9
        print(f"train fwd+bwd {label}: {seconds:7.2f} s/step  {flops / 1e12:6.2f} TFLOP/step  "
              f"{achieved:6.1f} GFLOP/s  = {achieved / peaks[label]:5.1%} of matmul peak")


def report_sampling(model: torch.nn.Module, args: argparse.Namespace) -> None:
    """Seconds per image for 50-step Euler + CFG (projected from a short grid with --quick)."""
    model.eval()
    num_steps = 3 if args.quick else 50
    for label, dtype in DTYPES:
        run = sampling_run(model, args, num_steps, dtype)
        start = time.perf_counter()
        evaluations = run()
        per_eval = (time.perf_counter() - start) / evaluations
        full = per_eval * 49  # 50 grid points -> 49 guided evaluations
        note = f" (projected from {evaluations} evaluations)" if args.quick else ""
        print(f"sample euler-50 + cfg {args.cfg_scale} {label}: {full / args.sample_batch:7.2f} s/image  "
              f"{per_eval:6.2f} s per guided evaluation of {2 * args.sample_batch} latents{note}")


def main() -> None:
    """Run every measurement and print one line each."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size, repeats = (1024, 3) if args.quick else (2048, 5)
    peaks = {label: matmul_peak(dtype or torch.float32, size, repeats) for label, dtype in DTYPES}
    model = rae_framework.build("denoiser", "dit-dh", preset=args.preset)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{args.preset}: {params:.1f}M parameters, latent {LATENT}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, attention {model.config.attention}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for label, peak in peaks.items():
        print(f"matmul peak {label} ({size}^3): {peak:7.1f} GFLOP/s")
    report_training(model, args, peaks)
    report_sampling(model, args)


if __name__ == "__main__":
    main()
