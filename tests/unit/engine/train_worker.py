"""Subprocess worker for the resume and DDP tests: trains with the test doubles, saves the final weights.

Usage: ``python train_worker.py STAGE OUT_DIR STEPS [--ddp]`` with STAGE ``stage1`` or ``stage2``. Prints
``step N`` after every optimiser step (the resume test kills it with SIGKILL at some step).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))

from doubles import DenoiserDoubleConfig, Discriminator, LinearSchedule, TinyDenoiser, tiny_rae  # noqa: E402
from test_stage2 import ToyLatents  # noqa: E402

from rae_framework.data.datasets import build_dataset  # noqa: E402
from rae_framework.engine.checkpoints import module_tensors  # noqa: E402
from rae_framework.config import OptimizerConfig  # noqa: E402
from rae_framework.data.config import DataConfig  # noqa: E402
from rae_stages.configs import TrainDecoderStage, TrainDenoiserStage  # noqa: E402
from rae_framework.engine.distributed import init_distributed  # noqa: E402
from rae_framework.engine import TrainingJob  # noqa: E402
from rae_framework.engine.logging import RunLogger  # noqa: E402
from rae_stages.train_decoder import Stage1Parts, train_decoder  # noqa: E402
from rae_stages.train_denoiser import train_denoiser  # noqa: E402

OPTIMIZER = OptimizerConfig(lr=5e-3, warmup_steps=3, decay="cosine", weight_decay=0.01)


def report(step: int, loss: float) -> None:
    print(f"step {step} {loss!r}", flush=True)


def stage2(out: Path, steps: int, context, accumulation: int) -> dict:
    stage = TrainDenoiserStage(steps=steps, batch_size=16, grad_accumulation=accumulation, checkpoint_every=2,
                               keep_last=2, ema_decay=0.8, log_every=1, optimizer=OPTIMIZER)
    denoiser = TinyDenoiser(DenoiserDoubleConfig())
    losses = []
    job = TrainingJob("train_denoiser", out / "ckpt", RunLogger(out, enabled=context.is_main, tensorboard=False),
                      seed=3, context=context, on_step=lambda s, loss: (losses.append(loss), report(s, loss)))
    state = train_denoiser(denoiser, LinearSchedule(), ToyLatents(), stage, job, flips=True)
    return {"model": module_tensors(state.model), "ema": module_tensors(state.ema.model)}, losses


def stage1(out: Path, steps: int, context, accumulation: int) -> dict:
    del accumulation
    stage = TrainDecoderStage(steps=steps, batch_size=8, checkpoint_every=2, keep_last=2, ema_decay=0.8,
                              log_every=1, sample_every=1000, optimizer=OPTIMIZER, discriminator_start_step=1,
                              gan_start_step=2, perceptual_weight=0.0)
    from rae_gan.configs import DiffAugmentConfig, GANLossConfig
    from rae_gan.diffaug import DiffAugment
    from rae_gan.losses import HingeLoss

    rae = tiny_rae()
    parts = Stage1Parts(discriminator=Discriminator(), gan_loss=HingeLoss(GANLossConfig()),
                        augment=DiffAugment(DiffAugmentConfig()))
    dataset = build_dataset(DataConfig(source="digits", image_size=16), "train")
    job = TrainingJob("train_decoder", out / "ckpt", RunLogger(out, enabled=context.is_main, tensorboard=False),
                      seed=3, out_dir=out, context=context, on_step=report)
    state = train_decoder(rae, dataset, torch.zeros(0, 3, 16, 16), stage, parts, job)
    weights = {"decoder": module_tensors(state.decoder), "ema": module_tensors(state.ema.model),
               "discriminator": module_tensors(state.discriminator)}
    return weights, []


def main() -> None:
    stage, out, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    accumulation = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    torch.set_num_threads(1)
    torch.manual_seed(0)  # identical initial weights in every process
    context = init_distributed()
    weights, losses = {"stage1": stage1, "stage2": stage2}[stage](out, steps, context, accumulation)
    if context.is_main:
        for name, tensors in weights.items():
            save_file(tensors, str(out / f"final_{name}.safetensors"))
        (out / "losses.json").write_text(json.dumps(losses))


if __name__ == "__main__":
    main()
