"""Stage ``sample``: class labels -> noise -> guided integration -> RAE decode -> ``samples.npz`` + ``grid.png``.

Global batch ``k`` of the label list uses noise from a generator seeded by ``(seed, k)``, so its images do not
depend on the process that makes it. The batch is the unit of progress: each finished batch is written as its
own uint8 file under ``checkpoints/sample/<input hash>/`` (:mod:`rae_framework.data.sample_chunks`); a rerun
after a kill (SIGKILL included) skips the batches on disk, with any number of processes, and the ranks split
the rest in contiguous runs. On SIGTERM/SIGUSR1 every rank finishes its batch, the ranks agree, and the stage
stops with :class:`~rae_framework.errors.PreemptedError` (exit 75) naming the row it will resume at. Rank 0
streams the batches in row order into ``samples.npz``: memory is one batch, whatever the count, and the file
is the same bytes whatever the interruptions and world sizes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from rae_framework.data.captions import DEFAULT_TEMPLATE, class_captions
from rae_framework.data.sample_chunks import MARKER, ChunkLayout, SampleChunks, grid_rows
from rae_framework.engine import (DistContext, PreemptionNotice, RunLogger, RunState, broadcast_object, build_rae,
                                  generate_batch, load_guide, progress, progress_folder, rank_chunks, round_count,
                                  save_grid, signal_name, step_generator, stop_if_noticed)
from rae_framework.errors import PreemptedError
from rae_framework.interfaces import Conditioner, Denoiser, Guidance, NoiseSchedule, Sampler, Stage
from rae_stages.configs import SampleStage

STREAM_SAMPLING = 3


def sample_labels(stage: SampleStage, num_classes: int, seed: int) -> torch.Tensor:
    """``(num_classes * per_class,)`` int64 labels: class-major blocks (``equal``) or uniform (``random``)."""
    total = num_classes * stage.per_class
    if stage.labels == "equal":
        return torch.arange(num_classes).repeat_interleave(stage.per_class)
    return torch.randint(num_classes, (total,), generator=step_generator(seed, STREAM_SAMPLING, -1))


def saved_progress(store: SampleChunks, out: Path, fresh: bool) -> tuple[list[int], bool]:
    """Rank 0's view of ``store``: ``(finished batches, whether out is already their assembled npz)``."""
    if fresh:
        shutil.rmtree(store.folder, ignore_errors=True)
    store.folder.mkdir(parents=True, exist_ok=True)
    store.clear_partial()
    if store.assembled(out):
        return list(range(store.layout.num_chunks)), True
    return store.done(), False


class PromptConditions:
    """Text runs: label ``k`` of the sample list is prompt ``k``; a batch's labels -> its Conditioning and null."""

    def __init__(self, conditioner: Conditioner, prompts: list[str]) -> None:
        self.conditioner, self.prompts = conditioner, prompts

    def __call__(self, labels: torch.Tensor):
        """``labels (b,)`` -> ``(Conditioning of their prompts, null condition of b rows)``."""
        return self.conditioner.encode([self.prompts[int(k)] for k in labels]), self.conditioner.null(len(labels))


def run_sampling(denoiser: Denoiser, schedule: NoiseSchedule, sampler: Sampler, decode: Callable,
                 stage: SampleStage, out_folder: str | Path, *, seed: int, guidance: Guidance | None = None,
                 guide: Denoiser | None = None, context: DistContext | None = None, chunks: Path | None = None,
                 notice: PreemptionNotice | None = None, logger: RunLogger | None = None,
                 prompts: PromptConditions | None = None) -> Path | None:
    """Generate every label's sample into ``out_folder/samples.npz`` and ``grid.png``; returns the npz path
    (None on ranks other than 0). Text runs (``prompts``): label ``k`` stands for prompt ``k``.

    ``chunks`` is the folder of finished batches to continue from; it must be keyed by everything the
    samples depend on (the stage passes ``checkpoints/sample/<input hash>/``). Without it, batches go to
    ``out_folder/.chunks``, emptied first (nothing is resumed). With ``notice`` (entered by the caller), a
    SIGTERM/SIGUSR1 stops the ranks together after their current batch (:class:`PreemptedError`)."""
    context, folder = context or DistContext(), Path(out_folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = sample_labels(stage, len(prompts.prompts) if prompts else denoiser.num_classes, seed)
    store = SampleChunks(chunks or folder / ".chunks", ChunkLayout(len(labels), stage.batch_size))
    out, layout = folder / "samples.npz", store.layout
    done, assembled = broadcast_object(saved_progress(store, out, chunks is None) if context.is_main else None,
                                       context)
    if logger is not None and assembled:
        logger.info(f"sample: {out} was assembled before the interruption ({store.folder / MARKER})")
    elif logger is not None and done:
        logger.info(f"sample: resuming at row {layout.resume_row(done)} of {layout.total} ({len(done)} of "
                    f"{layout.num_chunks} batches done in {store.folder})")
    remaining = sorted(set(range(layout.num_chunks)) - set(done))
    mine = rank_chunks(remaining, context.rank, context.world_size)
    bar = progress(layout.num_chunks, "sample", enabled=context.is_main, initial=len(done))
    try:
        for index in range(round_count(len(remaining), context.world_size)):
            if index < len(mine):
                rows = layout.rows(mine[index])
                batch, null = labels[rows.start:rows.stop], None
                if prompts is not None:
                    batch, null = prompts(batch)
                images = generate_batch(denoiser, schedule, sampler, decode, batch,
                                        step_generator(seed, STREAM_SAMPLING, mine[index]), guidance=guidance,
                                        guide=guide, device=context.device, null=null)  # (b, H, W, 3) uint8
                store.write(mine[index], images)
            bar.update(min(context.world_size, len(remaining) - index * context.world_size))
            if notice is not None and notice.agreed(context):
                stop_sampling(store, context, notice, logger)
    finally:
        bar.close()
    context.barrier()
    if not context.is_main:
        return None
    if not assembled:
        store.assemble(labels.numpy(), out)
    if chunks is None:
        shutil.rmtree(store.folder)  # only the marker is left; nothing resumes from it
    shown, shown_labels = grid_rows(out, labels.numpy(), stage.grid_columns, stage.grid_max_classes)
    save_grid(shown, shown_labels, folder / "grid.png", stage.grid_columns, stage.grid_max_classes)
    return out


def stop_sampling(store: SampleChunks, context: DistContext, notice: PreemptionNotice,
                  logger: RunLogger | None) -> None:
    """Every rank has written its batch of this round: name the row a rerun resumes at, then raise
    :class:`PreemptedError`."""
    context.barrier()
    done = store.done()
    message = (f"sample: preempted ({signal_name(notice.received)}) at row {store.layout.resume_row(done)} of "
               f"{store.layout.total}; {len(done)} of {store.layout.num_chunks} batches saved in {store.folder}. "
               f"Rerun the same command to resume")
    if logger is not None:
        logger.info(message)
    raise PreemptedError(message, notice.received)


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
        """Continue from the batches of ``checkpoints/sample/<input hash>/``; SIGTERM/SIGUSR1 stop after the
        current batch (exit 75)."""
        with PreemptionNotice() as notice:
            self._sample(run, notice)
            stop_if_noticed(notice, run.context, run.logger, "sample", "the samples were assembled")

    def _sample(self, run: RunState, notice: PreemptionNotice) -> None:
        denoiser = trained_denoiser(run, self.config.use_ema)
        guidance = run.optional("guidance")
        guide = load_guide(run) if getattr(guidance, "needs_guide", False) else None
        rae = build_rae(run)

        def decode(latents: torch.Tensor) -> torch.Tensor:
            return rae.decode(latents).clamp(0.0, 1.0)

        written = run_sampling(denoiser, run.component("schedule"), run.component("sampler"), decode, self.config,
                               run.out_dir / "samples", seed=run.assembly.seed, guidance=guidance, guide=guide,
                               context=run.context, chunks=progress_folder(run, "sample"), notice=notice,
                               logger=run.logger, prompts=self._prompts(run))
        if written is not None:  # rank 0
            run.logger.image_file("sample/grid", 0, written.parent / "grid.png")

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
