"""Stage ``sample``: class labels -> noise -> guided integration -> RAE decode -> ``samples.npz`` + ``grid.png``.

Batch ``k`` of the global label list uses noise from a generator seeded by ``(seed, k)`` and is produced by
rank ``k % world_size``; ranks write their batches to uint8 shard files that rank 0 streams into
``samples.npz`` in batch order, so the result does not depend on the number of processes and no process
holds more than a batch of images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from rae_framework.data.captions import DEFAULT_TEMPLATE, class_captions
from rae_framework.data.sample_shards import ShardLayout, ShardWriter, grid_rows, merge_shards
from rae_framework.engine import (DistContext, RunState, build_rae, generate_batch, load_guide, progress, save_grid,
                                  step_generator)
from rae_framework.interfaces import Conditioner, Denoiser, Guidance, NoiseSchedule, Sampler, Stage
from rae_stages.configs import SampleStage

STREAM_SAMPLING = 3


def sample_labels(stage: SampleStage, num_classes: int, seed: int) -> torch.Tensor:
    """``(num_classes * per_class,)`` int64 labels: class-major blocks (``equal``) or uniform (``random``)."""
    total = num_classes * stage.per_class
    if stage.labels == "equal":
        return torch.arange(num_classes).repeat_interleave(stage.per_class)
    return torch.randint(num_classes, (total,), generator=step_generator(seed, STREAM_SAMPLING, -1))




class PromptConditions:
    """Text runs: label ``k`` of the sample list is prompt ``k``; a batch's labels -> its Conditioning and null."""

    def __init__(self, conditioner: Conditioner, prompts: list[str]) -> None:
        self.conditioner, self.prompts = conditioner, prompts

    def __call__(self, labels: torch.Tensor):
        """``labels (b,)`` -> ``(Conditioning of their prompts, null condition of b rows)``."""
        return self.conditioner.encode([self.prompts[int(k)] for k in labels]), self.conditioner.null(len(labels))


def run_sampling(denoiser: Denoiser, schedule: NoiseSchedule, sampler: Sampler, decode: Callable,
                 stage: SampleStage, out_folder: str | Path, *, seed: int, guidance: Guidance | None = None,
                 guide: Denoiser | None = None, context: DistContext | None = None,
                 prompts: PromptConditions | None = None) -> Path | None:
    """Generate every label's sample into ``out_folder/samples.npz`` and ``grid.png``; returns the npz path.

    Each rank writes its batches into its own uint8 shard as they come; rank 0 streams the shards into
    ``samples.npz`` (:mod:`rae_framework.data.sample_shards`): memory is one batch, whatever the count."""
    context, folder = context or DistContext(), Path(out_folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = sample_labels(stage, len(prompts.prompts) if prompts else denoiser.num_classes, seed)
    layout = ShardLayout(len(labels), stage.batch_size, context.world_size)
    writer, mine = None, layout.batches(context.rank)
    bar = progress(len(mine), "sample", enabled=context.is_main)
    for k in mine:
        batch, null = labels[layout.rows(k).start:layout.rows(k).stop], None
        if prompts is not None:
            batch, null = prompts(batch)
        images = generate_batch(denoiser, schedule, sampler, decode, batch, step_generator(seed, STREAM_SAMPLING, k),
                                guidance=guidance, guide=guide, device=context.device, null=null)  # (b, H, W, 3)
        writer = writer or ShardWriter(folder, layout, context.rank, images.shape[1:])
        writer.write(k, images)
        bar.update(1)
    bar.close()
    if writer is not None:
        writer.close()
    context.barrier()
    if not context.is_main:
        return None
    merge_shards(folder, layout, labels.numpy(), folder / "samples.npz")
    shown, shown_labels = grid_rows(folder / "samples.npz", labels.numpy(), stage.grid_columns, stage.grid_max_classes)
    save_grid(shown, shown_labels, folder / "grid.png", stage.grid_columns, stage.grid_max_classes)
    return folder / "samples.npz"


def trained_denoiser(run: RunState, use_ema: bool) -> Denoiser:
    """The assembly's denoiser with this run's trained weights (EMA or raw), else its ``checkpoint``."""
    denoiser = run.component("denoiser")
    weights = run.output("denoiser_ema" if use_ema else "denoiser")
    if weights is not None:
        denoiser.load_state_dict(load_file(str(weights)))
    elif run.assembly.spec("denoiser").checkpoint is None:
        run.logger.warning("sample: no trained denoiser (no train_denoiser stage output and no "
                           "components.denoiser.checkpoint); sampling with untrained weights")
    return denoiser.to(run.context.device).eval()


class Sample(Stage):
    """``sample``: generate with the (EMA) denoiser -> ``samples/samples.npz`` and ``samples/grid.png``."""

    Config = SampleStage

    def run(self, run: RunState) -> None:
        """Seeded per batch: a rerun reproduces the samples, so there is nothing to resume."""
        denoiser = trained_denoiser(run, self.config.use_ema)
        guidance = run.optional("guidance")
        guide = load_guide(run) if getattr(guidance, "needs_guide", False) else None
        rae = build_rae(run)

        def decode(latents: torch.Tensor) -> torch.Tensor:
            return rae.decode(latents).clamp(0.0, 1.0)

        run_sampling(denoiser, run.component("schedule"), run.component("sampler"), decode, self.config,
                     run.out_dir / "samples", seed=run.assembly.seed, guidance=guidance, guide=guide,
                     context=run.context, prompts=self._prompts(run))

    def _prompts(self, run: RunState) -> PromptConditions | None:
        """Text runs: the configured prompts, else each class's training caption; None for class runs."""
        conditioner = run.optional("conditioner")
        if getattr(conditioner, "input_kind", None) != "text":
            return None
        prompts = self.config.prompts
        if prompts is None:
            training = run.assembly.stages.train_denoiser  # None when the assembly has no such stage
            template = getattr(training, "caption_template", DEFAULT_TEMPLATE)
            captions = class_captions(run.assembly.data, template)
            prompts = [captions.caption(label) for label in range(len(captions.names))]
        return PromptConditions(conditioner.to(run.context.device).eval(), prompts)
