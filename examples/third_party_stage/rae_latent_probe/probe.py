"""Stage ``latent_probe``: how linearly the classes separate in the RAE's normalised latents.

It fits a multinomial logistic regression (full batch, seeded, on the run's device) on the latents of the
training split and reports its accuracy on the held-out split in ``probe.json``. The whole stage is this
file: settings, spec and loop. torch is imported inside the loop only, so that ``rae validate`` and
``rae list`` stay torch-free.
"""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import Field

from rae_framework.stage import Stage, StageConfig, StageSpec



class LatentProbeConfig(StageConfig):
    """Settings under ``stages.latent_probe``."""

    spec: ClassVar[StageSpec] = StageSpec(
        order=250, summary="linear probe of the normalised latents (held-out accuracy)",
        roles=("encoder", "decoder"), sections=("autoencoder", "data"), reads=("latent_stats",),
        outputs={"probe": "probe.json"})

    max_images: int = Field(2048, gt=0, description="At most this many images per split are encoded.")
    steps: int = Field(200, gt=0, description="Full-batch Adam steps of the logistic regression.")
    lr: float = Field(0.05, gt=0, description="Adam learning rate.")
    batch_size: int = Field(64, gt=0, description="Images per encoder batch.")


def encode_split(run, split: str, config: LatentProbeConfig):
    """``(latents (N, C*h*w), labels (N,))`` of the first ``max_images`` images of ``split``."""
    import torch

    from rae_framework.data.datasets import build_dataset
    from rae_framework.engine import build_rae, encode_fn

    dataset = build_dataset(run.assembly.data, split)
    encode = encode_fn(build_rae(run), run.context.device)
    count = min(len(dataset), config.max_images)
    latents, labels = [], []
    for start in range(0, count, config.batch_size):
        pairs = [dataset[index] for index in range(start, min(start + config.batch_size, count))]
        latents.append(encode(torch.stack([image for image, _ in pairs])).flatten(1))  # (B, C*h*w)
        labels += [label for _, label in pairs]
    return torch.cat(latents), torch.tensor(labels, device=run.context.device)


def fit_probe(features, labels, classes: int, config: LatentProbeConfig, seed: int):
    """A seeded multinomial logistic regression ``features (N, D) -> logits (N, classes)``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(features.shape[1], classes).to(features.device)
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) * 0.01)
        probe.bias.zero_()
    optimizer = torch.optim.Adam(probe.parameters(), lr=config.lr)
    for _ in range(config.steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(features), labels).backward()
        optimizer.step()
    return probe


class LatentProbe(Stage):
    """``latent_probe`` -> ``probe.json`` (train and held-out accuracy, image counts)."""

    Config = LatentProbeConfig

    def run(self, run) -> None:
        """Encode both splits, fit the probe, write the accuracies (rank 0)."""
        import torch

        from rae_framework.engine import atomic_write_text

        train_x, train_y = encode_split(run, "train", self.config)
        test_x, test_y = encode_split(run, "holdout", self.config)
        classes = int(max(train_y.max(), test_y.max() if len(test_y) else 0)) + 1
        probe = fit_probe(train_x, train_y, classes, self.config, run.assembly.seed)
        with torch.no_grad():
            accuracy = {split: float((probe(x).argmax(1) == y).float().mean()) if len(y) else float("nan")
                        for split, x, y in (("train", train_x, train_y), ("holdout", test_x, test_y))}
        run.logger.info(f"latent_probe: held-out accuracy {accuracy['holdout']:.3f} ({len(test_y)} images)")
        if run.context.is_main:
            result = {"train_accuracy": accuracy["train"], "holdout_accuracy": accuracy["holdout"],
                      "train_images": len(train_y), "holdout_images": len(test_y)}
            atomic_write_text(run.output_path("probe"), json.dumps(result, indent=2) + "\n")
        run.context.barrier()
