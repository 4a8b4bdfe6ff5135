"""Train the digits classifier whose features give the quickstart's digits FID and whose logits give the class
accuracy of samples (feature extractor ``digits-classifier``, plugins/rae_metrics/digits_classifier.py).

Data: the framework's ``digits`` source exactly as the quickstart feeds it (8 x 8 upsampled bilinearly to
32 x 32, grey in RGB), its training split only (``data.holdout_fraction`` 0.1: 1,617 images); the 180
held-out digits are the FID reference of the evaluate stage and are never trained on. Images are rounded to
8 bits (samples are stored as uint8) and shifted by up to 2 px (generated digits are not centred exactly).
Seeded; with ``--threads 1`` a rerun reproduces the weights bit for bit::

    python examples/quickstart/train_digits_classifier.py --threads 1 \
        --out plugins/rae_metrics/weights/digits_classifier.safetensors

It prints the training loss, the accuracy on both splits and the floors of the metrics: the digits FID of real
training digits (all, and class-balanced draws of 30, 50 and 100 per class, sizes of sample sets) against the
real held-out digits, and the class accuracy of the held-out digits.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import rae_framework
from rae_framework.data.config import DataConfig
from rae_framework.data.datasets import build_dataset
from rae_metrics.configs import DigitsClassifierConfig
from rae_metrics.digits_classifier import DigitsClassifier

SHIFT = 2  # px of random translation


def split_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, 3, 32, 32) rounded to 8 bits, labels (N,))`` of the quickstart's ``split``."""
    dataset = build_dataset(DataConfig(source="digits", image_size=32), split)
    images = torch.stack([dataset[index][0] for index in range(len(dataset))])
    labels = torch.tensor([dataset[index][1] for index in range(len(dataset))])
    return (images * 255).round() / 255, labels


def shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by a random integer offset in [-SHIFT, SHIFT]^2 (zero fill)."""
    padded = F.pad(images, (SHIFT,) * 4)  # (B, 3, 36, 36)
    offsets = torch.randint(0, 2 * SHIFT + 1, (len(images), 2), generator=generator)
    side = images.shape[-1]
    return torch.stack([padded[i, :, y:y + side, x:x + side] for i, (y, x) in enumerate(offsets.tolist())])


def train(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor, args) -> None:
    """AdamW with cosine decay on shifted mini-batches; prints the loss every 5 epochs."""
    generator = torch.Generator().manual_seed(args.seed)
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    total = args.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    for epoch in range(args.epochs):
        order, running = torch.randperm(len(images), generator=generator), 0.0
        for batch in order.split(args.batch_size):
            logits, _ = model.logits_and_features(shifted(images[batch], generator))
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item() * len(batch)
        if (epoch + 1) % 5 == 0:
            print(f"epoch {epoch + 1:3d}  loss {running / len(images):.4f}", flush=True)
    model.requires_grad_(False)


@torch.no_grad()
def accuracy(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of correctly classified images."""
    return float((model(images).logits.argmax(1) == labels).double().mean())


def metric_floors(weights: Path, train: tuple[torch.Tensor, torch.Tensor],
                  holdout: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """The registered metrics on real digits, through the same path the evaluate stage uses: all training
    digits, and class-balanced draws of the sizes samples have (30, 50, 100 per class, mean and std of 5)."""
    features = {"name": "digits-classifier", "params": {"weights": str(weights)}}
    fid = rae_framework.build("metric", "fid", {"key": "gfid", "features": features})

    def digits_fid(images: torch.Tensor) -> float:
        fid.reset()
        fid.update(generated=images, reference=holdout[0])
        return next(iter(fid.compute().values()))

    floors = {"gfid: all training digits": digits_fid(train[0])}
    for per_class in (30, 50, 100):
        draws = torch.tensor([digits_fid(train[0][balanced_draw(train[1], per_class, seed)]) for seed in range(5)])
        floors[f"gfid: {per_class} training digits per class, mean of 5 draws"] = float(draws.mean())
        floors[f"gfid: {per_class} training digits per class, std of 5 draws"] = float(draws.std())
    accuracy_metric = rae_framework.build("metric", "class-accuracy", {"features": features})
    accuracy_metric.update(generated=holdout[0], labels=holdout[1])
    return {**floors, **accuracy_metric.compute()}


def balanced_draw(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` random images of each class (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(labels == c)[:, 0] for c in range(int(labels.max()) + 1)]
    return torch.cat([pick[torch.randperm(len(pick), generator=generator)[:per_class]] for pick in picks])


def main(argv: list[str] | None = None) -> None:
    """Train, save (safetensors), print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("plugins/rae_metrics/weights/digits_classifier.safetensors"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 = bit-reproducible)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]), flush=True)
    torch.manual_seed(args.seed)
    (train_x, train_y), holdout = split_tensors("train"), split_tensors("holdout")
    model = DigitsClassifier(DigitsClassifierConfig(pretrained=False))
    start = time.perf_counter()
    train(model, train_x, train_y, args)
    seconds = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(args.out))
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"trained {args.epochs} epochs in {seconds:.1f} s with {torch.get_num_threads()} thread(s); "
          f"{args.out} ({args.out.stat().st_size} bytes, sha256 {digest})")
    print(f"accuracy: train {accuracy(model, train_x, train_y):.4f} ({len(train_y)} digits), held-out "
          f"{accuracy(model, *holdout):.4f} ({len(holdout[1])} digits)")
    for key, value in sorted(metric_floors(args.out, (train_x, train_y), holdout).items()):
        print(f"floor on real digits: {key} = {value:.4f}")


if __name__ == "__main__":
    main()
