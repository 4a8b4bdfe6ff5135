"""Benchmark of the stage-1 autoencoder against diffusers ``AutoencoderRAE`` on this machine's CPU.

Both sides are the paper's 256-px configuration with random weights, built in the same run: DINOv2-B with 4
registers (224-px input, 768 x 16 x 16 latent) + ViT-XL decoder (1152 wide, 28 blocks, patch 16). The
framework's RAE is imported from the diffusers model (``load_diffusers_rae``), so both hold identical weights
and the script also prints the largest output difference. Timed: ``encode`` and ``decode`` of a batch of
256-px images, in fp32 and under bf16 autocast, as images/s (median of the repeats), and the ratio
framework / diffusers (> 1 = the framework is faster).

Usage: ``python bench/bench_autoencoder.py [--quick] [--threads N] [--batch 4] [--repeats 5]``.
``--quick`` times 1 repeat after 1 warm-up. The two sides run interleaved, so that load from other processes
slows both alike; on a busy machine compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from rae_framework import compat  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16}
DIFFUSERS_CONFIG = {"encoder_type": "dinov2", "encoder_hidden_size": 768, "encoder_patch_size": 14,
                    "encoder_num_hidden_layers": 12, "encoder_input_size": 224, "patch_size": 16,
                    "decoder_hidden_size": 1152, "decoder_num_hidden_layers": 28, "decoder_num_attention_heads": 16,
                    "decoder_intermediate_size": 4096}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 1 timed repeat")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=4, help="images per batch (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    return parser.parse_args()


def autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16 CPU autocast, or nothing for fp32."""
    return torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()


def paired_throughput(runs: tuple[Callable[[], torch.Tensor], ...], batch: int, repeats: int,
                      dtype: torch.dtype | None) -> list[float]:
    """Median images/s of each run over ``repeats`` calls after one warm-up, the runs interleaved.

    Interleaving makes a shared, busy machine slow both sides alike, which keeps the ratio meaningful.
    """
    times: list[list[float]] = [[] for _ in runs]
    with torch.inference_mode(), autocast(dtype):
        for run in runs:
            run()
        for _ in range(repeats):
            for index, run in enumerate(runs):
                started = time.perf_counter()
                run()
                times[index].append(time.perf_counter() - started)
    return [batch / statistics.median(each) for each in times]


def build_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """(framework RAE, diffusers AutoencoderRAE) with the same random weights."""
    from diffusers import AutoencoderRAE

    from rae_framework.interop.official_rae import load_diffusers_rae

    torch.manual_seed(0)
    theirs = AutoencoderRAE(**DIFFUSERS_CONFIG).eval()
    ours = load_diffusers_rae(dict(theirs.config), theirs.state_dict()).eval()
    return ours, theirs


def max_difference(ours, theirs, images: torch.Tensor) -> tuple[float, float]:
    """Largest |difference| of the latents and of the reconstructions (fp32)."""
    with torch.inference_mode():
        latent = theirs.encode(images).latent
        return ((ours.encode(images) - latent).abs().max().item(),
                (ours.decode(latent) - theirs.decode(latent).sample).abs().max().item())


def measure(ours, theirs, images: torch.Tensor, repeats: int) -> list[tuple[str, str, float, float]]:
    """Rows (operation, dtype, framework images/s, diffusers images/s)."""
    with torch.inference_mode():
        latent = ours.encode(images)
    runs = {"encode": (lambda: ours.encode(images), lambda: theirs.encode(images).latent),
            "decode": (lambda: ours.decode(latent), lambda: theirs.decode(latent).sample)}
    rows = []
    for operation, pair in runs.items():
        for label, dtype in DTYPES.items():
            rows.append((operation, label, *paired_throughput(pair, images.shape[0], repeats, dtype)))
    return rows


def main() -> None:
    """Build both models, check they agree, time them and print a table."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    compat.ensure_torchvision_importable()
    repeats = 1 if args.quick else args.repeats
    ours, theirs = build_models()
    images = torch.rand(args.batch, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    latent_diff, image_diff = max_difference(ours, theirs, images)
    print(f"DINOv2-B/14 reg4 (224 px) + ViT-XL decoder, 256-px images, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {repeats} timed repeat(s)")
    print(f"max |framework - diffusers|: latent {latent_diff:.2e}, image {image_diff:.2e}")
    print(f"{'op':<8}{'dtype':<7}{'framework img/s':>17}{'diffusers img/s':>17}{'ratio':>8}")
    for operation, label, mine, peer in measure(ours, theirs, images, repeats):
        print(f"{operation:<8}{label:<7}{mine:>17.2f}{peer:>17.2f}{mine / peer:>8.2f}")


if __name__ == "__main__":
    main()
