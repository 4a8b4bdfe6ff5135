"""Host work per step of one rank of the 8-GPU DiT^DH-XL recipe, simulated on the CPU.

    python bench/bench_host_overhead.py                 # all four parts, a few minutes
    python bench/bench_host_overhead.py --only draws    # draws | cache | jpeg | evaluate

The rank's share is 128 of a global batch of 1024, latents 768x16x16. The denoiser is a stand-in: the
device's 0.4 s of work per step (165 TFLOP at 40% of an H100's bf16 peak, issue 14) is a sleep, so the
host work around it, and whether DataLoader workers keep up, shows. Prints, with the load average:

    draws: share 128 <ms> ms, global 1024 <ms> ms          goal: share <= global / 6
    data cache: <ms> ms/step                                host time to hand over a bf16 cached batch
    data on-the-fly: <ms> ms/step with <W> workers, <n> images/s per worker
    evaluate: peak RSS <GB> GB at 5k samples, <GB> GB at 20k samples   (256 px)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rae_framework.data.datasets import BatchPlan, ImageFolderDataset, PlannedBatches
from rae_framework.data.latent_cache import LatentCache
from rae_framework.data.loading import LoaderSettings, PrefetchedBatches, StackImages
from rae_framework.data.npz_stream import Member, write_npz
from rae_framework.engine.draws import denoiser_draws

GLOBAL, SHARE, RANKS, LATENT = 1024, 128, 8, (768, 16, 16)
DEVICE = torch.device("cpu")


class ShiftedTimes:
    """The schedule's part the draws use: ``sample_time`` (one uniform per row, shifted)."""

    def sample_time(self, batch_size: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
        u = torch.rand(batch_size, generator=generator, device=device)
        return 3 * u / (1 + 2 * u)


def best_ms(run, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timings of ``run()``, in ms (the machine is shared: the minimum is the cost)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def bench_draws() -> None:
    """This rank's share (rows 128-256) against the whole global batch, as every rank drew it before."""
    def draw(start: int, stop: int):
        return lambda: denoiser_draws(ShiftedTimes(), seed=0, stream=2, step=7, start=start, stop=stop,
                                      latent_shape=LATENT, class_dropout=0.1, device=DEVICE)

    share, whole = best_ms(draw(SHARE, 2 * SHARE)), best_ms(draw(0, GLOBAL))
    print(f"draws: share {SHARE} {share:.0f} ms, global {GLOBAL} {whole:.0f} ms "
          f"(ratio {whole / share:.1f}x; goal share <= global / 6)", flush=True)


def step_loop(fetch, plan: BatchPlan, steps: int, step_seconds: float, workers: int) -> list[float]:
    """Per-step host milliseconds spent waiting for this rank's prefetched batch (the stand-in device step
    is a sleep; the copy to the device and any widening are device work on a GPU and not counted)."""
    prefetched = PrefetchedBatches(fetch, PlannedBatches(plan, GLOBAL, 0, steps, rank=0, world_size=RANKS),
                                   LoaderSettings(workers))
    waits = []
    for step in range(steps):
        start = time.perf_counter()
        x, _ = prefetched.take(plan.batch(step, GLOBAL, 0, RANKS))
        waits.append((time.perf_counter() - start) * 1000)
        assert x.shape[0] == SHARE
        time.sleep(step_seconds)  # the device computes; workers load ahead
    return waits


def cpu_ms(run) -> float:
    """CPU milliseconds of one ``run()`` in this process (what a worker spends, whatever the machine's load)."""
    start = time.process_time()
    run()
    return (time.process_time() - start) * 1000


def make_cache(folder: Path, images: int) -> LatentCache:
    """A bf16 cache with flips (2 rows per image) of random latents, laid out as build_latent_cache does."""
    folder.mkdir(parents=True)
    latents = np.lib.format.open_memmap(folder / "latents.npy", mode="w+", dtype=np.int16,
                                        shape=(2 * images, *LATENT))
    for start in range(0, 2 * images, 256):
        rows = torch.randn(min(256, 2 * images - start), *LATENT).to(torch.bfloat16)
        latents[start:start + rows.shape[0]] = rows.view(torch.int16).numpy()
    latents.flush()
    np.save(folder / "labels.npy", np.arange(images, dtype=np.int64) % 1000)
    (folder / "meta.json").write_text(json.dumps({"key": "bench", "flips": True, "num_samples": images,
                                                  "dtype": "bf16", "latent_shape": list(LATENT)}))
    return LatentCache(folder)


def bench_cache(scratch: Path, workers: int, steps: int, step_seconds: float) -> None:
    """Host ms per step to receive a prefetched bf16 batch of the share, read by workers from the memmap."""
    cache = make_cache(scratch / "cache", images=1024)
    waits = step_loop(cache.rows, BatchPlan(cache.num_samples, seed=0, flip=True), steps, step_seconds, workers)
    items = BatchPlan(cache.num_samples, seed=1, flip=True).batch(0, GLOBAL, 0, RANKS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    worker = cpu_ms(lambda: cache.rows(items))
    torch.set_num_threads(threads)
    print(f"data cache: {np.median(waits[2:]):.0f} ms/step (median of steps 3-{steps}, first {waits[0]:.0f} ms; "
          f"bf16 cache, {workers} workers, share {SHARE}; a worker spends {worker:.0f} ms CPU per batch; "
          "goal <= 50 ms)", flush=True)


def make_jpegs(root: Path, count: int) -> None:
    """ImageNet-like JPEGs (500x375, smooth noise, quality 90) in 4 class folders."""
    rng = np.random.default_rng(0)
    for index in range(count):
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        folder = root / f"class{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:05d}.JPEG", quality=90)


def bench_jpeg(scratch: Path, workers: int, steps: int, step_seconds: float) -> None:
    """JPEG decode + ADM crop to 256 + collate: one process's rate, then the step loop with workers."""
    make_jpegs(scratch / "jpeg", 256)
    dataset = ImageFolderDataset(scratch / "jpeg", 256)
    fetch = StackImages(dataset)
    items = [(index, index % 2 == 0) for index in range(64)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (idle OpenMP threads would spin on CPU time)
    fetch(items)  # warm: files in the page cache, as for the workers' later epochs
    start_wall = time.perf_counter()
    cpu = cpu_ms(lambda: fetch(items)) / 1000
    wall = time.perf_counter() - start_wall
    torch.set_num_threads(threads)
    rate = 64 / cpu  # images per CPU second: what one worker process does on a core of its own
    waits = step_loop(fetch, BatchPlan(len(dataset), seed=0, flip=True), steps, step_seconds, workers)
    needed = math.ceil(SHARE / (rate * step_seconds))
    print(f"data on-the-fly: {np.median(waits[1:]):.0f} ms/step with {workers} workers, {rate:.0f} images/s per "
          f"worker (per CPU second; {64 / wall:.0f}/s wall on this loaded machine); a {step_seconds} s step of "
          f"{SHARE} images needs {needed} workers per GPU", flush=True)


def write_samples(path: Path, count: int) -> None:
    """An ADM samples.npz of ``count`` 256-px uint8 images, written batch by batch."""
    def chunks():
        for start in range(0, count, 500):
            rows = min(500, count - start)
            yield np.broadcast_to((np.arange(start, start + rows) % 251).astype(np.uint8)[:, None, None, None],
                                  (rows, 256, 256, 3))
    write_npz(path, {"arr_0": Member((count, 256, 256, 3), np.uint8, chunks()),
                     "arr_1": Member((count,), np.int64, [np.arange(count) % 1000])})


def evaluate_rss(samples: Path) -> float:
    """Peak RSS (GB) of a fresh process that runs the engine's evaluation of ``samples`` (fid-tiny, samples
    against themselves as the reference, batch 100)."""
    code = (
        "import resource, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from rae_framework.session import Session\n"
        "from rae_framework.data.image_rows import NpzImages\n"
        "from rae_framework.engine.distributed import DistContext\n"
        "from rae_framework.engine import build_metric\n"
        "from rae_stages.evaluate import evaluate_metric\n"
        "rows = NpzImages(sys.argv[1])\n"
        "metric = build_metric(Session(), 'fid-tiny')\n"
        "evaluate_metric('fid-tiny', metric, samples=rows, reference=rows, reconstruct=None, batch_size=100,"
        " context=DistContext())\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    done = subprocess.run([sys.executable, "-c", code, str(samples)], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1e6  # ru_maxrss is in kB on Linux


def bench_evaluate(scratch: Path, counts: tuple[int, ...]) -> None:
    """Peak RSS of evaluation at two sample counts: bounded by the batch when the two agree."""
    figures = []
    for count in counts:
        path = scratch / f"samples_{count}.npz"
        write_samples(path, count)
        figures.append(evaluate_rss(path))
        path.unlink()
    parts = ", ".join(f"{rss:.2f} GB at {count // 1000}k samples" for rss, count in zip(figures, counts))
    print(f"evaluate: peak RSS {parts} (256 px, fid-tiny, batch 100; goal <= 4 GB, within 10%)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["draws", "cache", "jpeg", "evaluate"], action="append")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (this machine has few cores)")
    parser.add_argument("--steps", type=int, default=12, help="simulated steps per loader measurement")
    parser.add_argument("--step-seconds", type=float, default=0.4, help="the stand-in device time per step")
    parser.add_argument("--evaluate-counts", type=int, nargs=2, default=(5000, 20000))
    args = parser.parse_args()
    parts = args.only or ["draws", "cache", "jpeg", "evaluate"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="rae-host-") as scratch:
        scratch = Path(scratch)
        if "draws" in parts:
            bench_draws()
        if "cache" in parts:
            bench_cache(scratch, args.workers, args.steps, args.step_seconds)
        if "jpeg" in parts:
            bench_jpeg(scratch, args.workers, 8, args.step_seconds)
        if "evaluate" in parts:
            bench_evaluate(scratch, tuple(args.evaluate_counts))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
