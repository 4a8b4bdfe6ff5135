"""Stage-2 training speed with and without the latent cache, on the same assembly; prints the ratio.

    python bench/bench_latent_cache.py                    # built-in: random DINOv2-S (224 px), DiT-DH, digits
    python bench/bench_latent_cache.py --assembly A.yaml --steps 20 --images 512

Both runs train the same denoiser from the same initial weights on the same images for the same number of
steps; the cached run reads latents from the memory-mapped cache, the other encodes every batch. The cache
build time is reported separately (it is paid once per dataset, encoder and statistics).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import rae_framework  # noqa: E402
from rae_framework.data.datasets import build_dataset  # noqa: E402
from rae_framework.data.latent_cache import build_latent_cache  # noqa: E402
from rae_framework.data.loading import LoadedLatents, LoaderSettings, StackImages  # noqa: E402
from rae_framework.engine.distributed import DistContext  # noqa: E402
from rae_framework.engine.logging import RunLogger  # noqa: E402
from rae_framework.engine.run_state import RunState  # noqa: E402
from rae_framework.engine import TrainingJob, build_rae, encode_fn  # noqa: E402
from rae_stages.train_denoiser import train_denoiser  # noqa: E402

DEFAULT_ASSEMBLY = """
name: bench-latent-cache
components:
  encoder: {name: dinov2, params: {size: s, pretrained: false}}
  decoder: {name: vit, params: {num_patches: 256, patch_size: 4, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}
  denoiser: {name: dit-dh, params: {hidden_size: [384, 512], depth: [2, 1], num_heads: [6, 8], num_classes: 10}}
  schedule: {name: shifted-flow, params: {time_distribution: logit-normal}}
data: {source: digits, image_size: 64}
stages:
  train_denoiser: {steps: 10, batch_size: 16, checkpoint_every: 100000}
"""


class Subset(torch.utils.data.Dataset):
    """The first ``count`` items of a dataset (keeps ``labels``)."""

    def __init__(self, dataset, count: int) -> None:
        self.dataset, self.count = dataset, min(count, len(dataset))
        self.labels = [int(label) for label in dataset.labels[:self.count]]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, item):
        return self.dataset[item]


def steps_per_second(state: RunState, source, stage, folder: Path) -> float:
    """Train ``stage.steps`` steps from the role-seeded initial weights; rate over all but the first step."""
    state.forget("denoiser")
    stamps: list[float] = []
    job = TrainingJob("train_denoiser", folder, RunLogger(folder, enabled=False), resume=False,
                      on_step=lambda step, loss: stamps.append(time.perf_counter()))
    train_denoiser(state.component("denoiser"), state.component("schedule"), source, stage, job)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assembly", help="assembly YAML (default: the built-in one above)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the assembly's)")
    parser.add_argument("--images", type=int, default=256, help="training images used by both runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(args.assembly) if args.assembly else Path(scratch) / "bench.yaml"
        if not args.assembly:
            path.write_text(DEFAULT_ASSEMBLY)
        overrides = [f"stages.train_denoiser.steps={args.steps}"] if args.steps else []
        assembly = rae_framework.load_assembly(str(path), overrides)
        run(assembly, Path(scratch), args.images)


def run(assembly, scratch: Path, images: int) -> None:
    """Build the cache, time both runs, print the figures."""
    state, stage = RunState(scratch / "run", assembly, DistContext()), assembly.stages.train_denoiser
    rae = build_rae(state, trained_decoder=False)
    dataset = Subset(build_dataset(assembly.data, "train"), images)
    encode = encode_fn(rae, torch.device("cpu"))
    start = time.perf_counter()
    cache = build_latent_cache(scratch / "cache", encode, dataset, latent_shape=tuple(assembly.latent_shape),
                               flips=assembly.data.horizontal_flip, key="bench", batch_size=64)
    build_seconds = time.perf_counter() - start
    cached = steps_per_second(state, cache, stage, scratch / "cached")
    on_the_fly = LoadedLatents(StackImages(dataset), len(dataset), encode, torch.device("cpu"), LoaderSettings())
    encoded = steps_per_second(state, on_the_fly, stage, scratch / "encoded")
    print(f"assembly {assembly.name}: latent {tuple(assembly.latent_shape)}, batch {stage.batch_size}, "
          f"{stage.steps} steps, {len(dataset)} images, torch threads {torch.get_num_threads()}")
    print(f"cache build: {build_seconds:.1f} s ({len(dataset) / build_seconds:.1f} images/s)")
    print(f"with latent cache:    {cached:.3f} steps/s")
    print(f"without latent cache: {encoded:.3f} steps/s")
    print(f"speed-up: {cached / encoded:.2f}x; the cache pays for itself after "
          f"{build_seconds / max(1e-9, 1 / encoded - 1 / cached):.0f} steps")


if __name__ == "__main__":
    main()
