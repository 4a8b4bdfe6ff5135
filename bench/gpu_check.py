"""The checks of bench/gpu_check.sh: what only a machine with an NVIDIA GPU can tell us, written to one JSON file.

    python bench/gpu_check.py --out gpu_check.json            # on a machine with one CUDA GPU (<= 10 min)
    python bench/gpu_check.py --dry-run --out /tmp/dry.json   # CPU, tiny sizes: everything but the CUDA calls

Checks, each a key of the JSON file (a check that fails records its error and the others still run):

* ``attention``: xformers' memory-efficient attention against SDPA on DiT^DH-XL's attention shape (bf16):
  largest difference and milliseconds of each, through the denoisers' ``AttentionBackend``;
* ``dit_dh_xl_step``: the bf16-autocast DiT^DH-XL training step (loss, backward, clip 1.0, fused AdamW, EMA)
  at a per-GPU share of 32 latents of 768 x 16 x 16, its FLOPs (``torch.utils.flop_counter``) and the MFU
  against ``--peak-tflops`` (default 989: H100/H200 SXM dense bf16);
* ``autoencoder``: DINOv2-B (registers, 224 px) encode and ViT-XL decode throughput in images/s under bf16
  autocast, random weights built offline from the configs;
* ``draws``: the engine's step draws sliced onto the GPU, equal to the CPU draws bit for bit, and their cost;
* ``latent_cache``: a latent cache built with a GPU encoder, read back and moved to the GPU, equal to
  encoding directly.

``--dry-run`` swaps the device for the CPU and every model for its ``-tiny`` preset, and records xformers
as skipped (it has no CPU kernel), so CI runs this file's code paths in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

import rae_framework
from rae_framework.autoencoder import RepresentationAutoencoder
from rae_framework.data.latent_cache import build_latent_cache
from rae_framework.engine import draw_step, step_generator
from rae_stages.train_denoiser import STREAM_STAGE2
from rae_denoisers.attention import AttentionBackend, xformers_unavailable_reason

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import counted_flops, engine_step  # noqa: E402  (this folder's shared helpers)

# Sizes of the real run and of the dry run: presets, latent shape, share, attention shape (B, heads, N, hd).
FULL = {"denoiser": "dit-dh-xl", "latent": (768, 16, 16), "share": 32, "attention": (32, 16, 256, 72),
        "encoder": "dinov2-b-reg", "decoder": "vit-xl", "images": 64, "image_size": 256, "repeats": 5}
DRY = {"denoiser": "dit-dh-tiny", "latent": (8, 4, 4), "share": 2, "attention": (2, 2, 16, 8),
       "encoder": "dinov2-tiny", "decoder": "vit-tiny", "images": 2, "image_size": 28, "repeats": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="JSON file for the figures")
    parser.add_argument("--dry-run", action="store_true", help="CPU and tiny sizes; no CUDA call")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU for the MFU")
    return parser.parse_args(argv)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn`` after one warm-up call, synchronising the device around each call."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def check_attention(device: torch.device, sizes: dict) -> dict:
    """xformers vs SDPA on one attention call: equality and speed (bf16)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(sizes["attention"], device=device, dtype=dtype) for _ in range(3))  # (B, h, N, hd)
    sdpa = AttentionBackend("sdpa")
    result = {"shape": list(sizes["attention"]), "dtype": str(dtype),
              "sdpa_ms": median_ms(lambda: sdpa(q, k, v), device, sizes["repeats"])}
    reason = xformers_unavailable_reason(q)
    if reason:
        return {**result, "xformers": f"skipped: {reason}"}
    xformers = AttentionBackend("xformers")
    difference = (xformers(q, k, v).float() - sdpa(q, k, v).float()).abs().max().item()
    return {**result, "xformers_ms": median_ms(lambda: xformers(q, k, v), device, sizes["repeats"]),
            "max_abs_diff": difference, "equal_within_bf16": difference < 2e-2}


def train_step(device: torch.device, sizes: dict) -> tuple[Callable[[], None], torch.nn.Module]:
    """The engine's bf16 training step of the denoiser at the per-GPU share (keyed draws moved to the GPU)."""
    model = rae_framework.build("denoiser", "dit-dh", preset=sizes["denoiser"]).to(device)
    schedule = rae_framework.build("schedule", "shifted-flow", {"latent_shape": list(sizes["latent"])})
    x = torch.randn(sizes["share"], *sizes["latent"], device=device)  # (B, C, h, w)
    y = torch.randint(0, model.num_classes, (sizes["share"],), device=device)
    return engine_step(model, schedule, x, y, torch.bfloat16), model


def check_dit_step(device: torch.device, sizes: dict, peak_tflops: float) -> dict:
    """Step time, TFLOP/s and MFU of the bf16 training step at the share."""
    step, model = train_step(device, sizes)
    flops = counted_flops(step)  # also the warm-up
    milliseconds = median_ms(step, device, sizes["repeats"])
    achieved = flops / milliseconds / 1e9  # TFLOP/s
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"preset": sizes["denoiser"], "share": sizes["share"], "step_ms": milliseconds,
            "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6, "tflop_per_step": flops / 1e12,
            "achieved_tflops": achieved, "mfu": achieved / peak_tflops, "peak_memory_gib": memory}


def build_autoencoder(device: torch.device, sizes: dict) -> RepresentationAutoencoder:
    """The RAE of the sizes' encoder and decoder presets, random weights (built offline), eval mode."""
    encoder = rae_framework.build("encoder", "dinov2", {"pretrained": False}, preset=sizes["encoder"])
    grid = encoder.input_size // encoder.patch_size
    decoder = rae_framework.build("decoder", "vit", {"token_dim": encoder.token_dim, "num_patches": grid * grid},
                                  preset=sizes["decoder"])
    return RepresentationAutoencoder(encoder, decoder).to(device).eval()


def check_autoencoder(device: torch.device, sizes: dict) -> dict:
    """Encode and decode throughput (images/s, bf16 autocast, random weights)."""
    rae = build_autoencoder(device, sizes)
    images = torch.rand(sizes["images"], 3, sizes["image_size"], sizes["image_size"], device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        latents = rae.encode(images)  # (B, C, h, w)
        encode_ms = median_ms(lambda: rae.encode(images), device, sizes["repeats"])
        decode_ms = median_ms(lambda: rae.decode(latents), device, sizes["repeats"])
    count = sizes["images"]
    return {"encoder": sizes["encoder"], "decoder": sizes["decoder"], "batch": count,
            "latent_shape": list(latents.shape[1:]), "encode_images_per_s": count / encode_ms * 1e3,
            "decode_images_per_s": count / decode_ms * 1e3}


def check_draws(device: torch.device, sizes: dict) -> dict:
    """The engine's draws for a global batch of 4 shares, rank 1's share moved to the device."""
    schedule = rae_framework.build("schedule", "shifted-flow", {"latent_shape": list(sizes["latent"])})
    share = sizes["share"]

    def drawn():
        return draw_step(schedule, step_generator(0, STREAM_STAGE2, 7), 4 * share, sizes["latent"], 0.1)

    on_device = drawn().slice(share, 2 * share, device)
    on_cpu = drawn().slice(share, 2 * share, torch.device("cpu"))
    equal = all(torch.equal(a.cpu(), b) for a, b in zip((on_device.noise, on_device.t, on_device.drop),
                                                         (on_cpu.noise, on_cpu.t, on_cpu.drop)))
    milliseconds = median_ms(lambda: drawn().slice(share, 2 * share, device), device, sizes["repeats"])
    return {"device": str(on_device.noise.device), "equal_to_cpu_draws": equal, "ms_per_step": milliseconds}


class ImagePairs:
    """A tiny dataset of random images: ``dataset[(index, flip)] -> (image (3, H, W), label)``."""

    def __init__(self, count: int, size: int) -> None:
        self.images = torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(3))
        self.labels = [index % 10 for index in range(count)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, bool]) -> tuple[torch.Tensor, int]:
        index, flip = item
        image = self.images[index]
        return (image.flip(-1) if flip else image), self.labels[index]


def check_latent_cache(device: torch.device, sizes: dict) -> dict:
    """Build a cache with the RAE on the device; its rows, moved to the device, equal direct encoding."""
    rae = build_autoencoder(device, sizes)
    dataset = ImagePairs(sizes["share"], sizes["image_size"])

    @torch.no_grad()
    def encode(images: torch.Tensor) -> torch.Tensor:
        return rae.encode(images.to(device))  # (B, C, h, w)

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cache = build_latent_cache(Path(folder) / "cache", encode, dataset, latent_shape=rae.latent_shape,
                                   flips=True, key="gpu-check", batch_size=max(1, sizes["share"] // 2))
        seconds = time.perf_counter() - start
        latents, _ = cache.batch([(0, False), (1, True)])  # (2, C, h, w) float32 on the CPU
    direct = encode(torch.stack([dataset.images[0], dataset.images[1].flip(-1)]))
    difference = (latents.to(device) - direct).abs().max().item()  # batch composition differs: not bitwise
    return {"latent_shape": list(rae.latent_shape), "rows": 2 * len(dataset), "build_s": seconds,
            "max_abs_diff_to_direct_encode": difference,
            "close": difference <= 1e-4 * max(1.0, direct.abs().max().item())}


def run_checks(device: torch.device, sizes: dict, peak_tflops: float) -> dict:
    """Every check; a failing one records its error instead of stopping the others."""
    checks = {"attention": lambda: check_attention(device, sizes),
              "dit_dh_xl_step": lambda: check_dit_step(device, sizes, peak_tflops),
              "autoencoder": lambda: check_autoencoder(device, sizes),
              "draws": lambda: check_draws(device, sizes), "latent_cache": lambda: check_latent_cache(device, sizes)}
    results = {}
    for name, check in checks.items():
        start = time.perf_counter()
        try:
            results[name] = check()
        except Exception as error:  # a broken check is a finding; the others still run
            results[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        results[name]["wall_s"] = time.perf_counter() - start
        print(name, json.dumps(results[name], default=str), flush=True)
    return results


def environment(device: torch.device, dry_run: bool) -> dict:
    """What the figures were measured on."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": name, "dry_run": dry_run, "torch": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> dict:
    """Run the checks and write the JSON file; returns its content."""
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible (use --dry-run to test the script on CPU)")
    device = torch.device("cpu" if args.dry_run else "cuda")
    sizes = DRY if args.dry_run else FULL
    report = {"environment": environment(device, args.dry_run), "sizes": sizes,
              "checks": run_checks(device, sizes, args.peak_tflops)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"gpu_check: figures written to {args.out}")
    return report


if __name__ == "__main__":
    main()
