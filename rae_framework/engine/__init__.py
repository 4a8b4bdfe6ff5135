"""The run engine: ``run_assembly(assembly, out_dir)`` runs the stages of an assembly (see ``runner``), and
the public toolkit that stage plugins build on (the names below; everything else in the package is private).
Training stages run on one shared loop, :func:`train` (``training``): a stage supplies a
:class:`~rae_framework.stage.TrainingTask`; resume, checkpoints, logging, divergence and barriers are the loop's.

The stages themselves are registered components of kind ``stage`` (the first-party ones are the
``rae_stages`` plugin): a plugin adds a stage as it adds an encoder (see :mod:`rae_framework.stage`).

Run directory::

    assembly.yaml                 the resolved assembly (presets merged, derived values filled)
    classes.json                  the dataset's class names (index = label), for sampling by name
    log.txt, metrics.csv          text log; one row per logged scalar (time, stage, step, name, value)
    tensorboard/                  the same scalars as TensorBoard events (the default tracker; see trackers)
    trackers.json                 each tracker's run (W&B id, MLflow run id): a resumed run continues it
    wandb/, mlruns/               the wandb tracker's local files; the mlflow tracker's default file: store
    checkpoints/<stage>/step_N/   training checkpoints (model/ema/... .safetensors + state.pt), keep-last-N
    checkpoints/sample|evaluate/<input hash>/  finished sample batches / metric states of an interrupted stage
    checkpoints/*.safetensors     final weights: decoder(_ema), latent_stats, denoiser(_ema)
    latent_cache/<key>/           the encoded training set (memory-mapped .npy), when no shared cache folder is set
    reconstructions/step_N.png    stage 1: held-out originals (top) over EMA reconstructions (bottom)
    samples/samples.npz, grid.png ADM layout (arr_0 uint8 (N, H, W, 3), arr_1 int64); one grid row per class
    metrics.json                  evaluation results
    stages/<stage>/stage_state.json  input hash + output hashes: a stage whose inputs are unchanged is skipped
    .rae.lock                     while a run writes: who holds the directory (``run_lock``); removed at exit

Determinism: data order and augmentation are a pure function of ``(seed, epoch)``; every random draw of a
training step comes from generators keyed by ``(seed, stream, step, block of 16 global rows)``, each rank
drawing only its share's blocks on its device (``draws``); components are built under a per-role seed. Hence a run killed at any point and resumed, a run with gradient accumulation,
and a DDP run produce the same weights as one uninterrupted single-process run (bit-identical for resume).
"""

from rae_framework.engine.artifacts import (build_rae, encode_fn, holdout_images, match_size, reconstruct,
                                            save_final_weights, statistics_file)
from rae_framework.engine.checkpoints import (CheckpointManager, module_tensors, rng_state, save_weights,
                                              set_rng_state)
from rae_framework.config import OptimizerConfig
from rae_framework.engine.chunk_work import (broadcast_object, gather_objects, progress_folder, rank_chunks,
                                             round_count, signal_name, stop_if_noticed)
from rae_framework.engine.distributed import DistContext, init_distributed, no_sync, unwrap, wrap_model
from rae_framework.engine.draws import (BLOCK_ROWS, RowKeys, StepDraws, augment_rows, block_generator,
                                        denoiser_draws, draw_rows, draw_step, step_generator)
from rae_framework.engine.ema import EMA
from rae_framework.engine.generation import generate_batch, load_guide, velocity_field
from rae_framework.data.image_rows import uint8_to_tensor
from rae_framework.engine.images import save_grid, to_uint8, write_npz
from rae_framework.engine.logging import RunLogger, progress
from rae_framework.engine.metrics import build_metric, reduce_metric
from rae_framework.engine.optim import build_optimizer, build_scheduler, clip_gradients
from rae_framework.engine.run_state import RunState, StageRecord, file_sha256, json_sha256
from rae_framework.engine.runner import RunResult, run_assembly
from rae_framework.engine.training import (PreemptionNotice, TrainingJob, TrainingTask, load_checkpoint,
                                           save_checkpoint, train, train_step)
from rae_framework.engine.statistics import (LatentStatistics, all_reduce_statistics, load_statistics,
                                             save_statistics)
from rae_framework.files import atomic_write, atomic_write_text

__all__ = [
    "all_reduce_statistics", "atomic_write", "atomic_write_text", "augment_rows", "block_generator", "BLOCK_ROWS",
    "broadcast_object", "gather_objects", "PreemptionNotice", "progress_folder", "rank_chunks", "round_count",
    "signal_name", "stop_if_noticed",
    "build_metric", "build_optimizer", "build_rae", "build_scheduler", "CheckpointManager", "clip_gradients",
    "denoiser_draws", "DistContext", "draw_rows", "draw_step", "EMA", "encode_fn", "file_sha256", "generate_batch",
    "holdout_images", "init_distributed", "json_sha256", "LatentStatistics", "load_checkpoint", "load_guide",
    "load_statistics", "match_size", "module_tensors", "no_sync", "OptimizerConfig", "progress", "reconstruct",
    "reduce_metric", "rng_state", "RowKeys", "run_assembly", "RunLogger", "RunResult", "RunState",
    "save_checkpoint", "save_final_weights", "save_grid", "save_statistics", "save_weights", "set_rng_state",
    "StageRecord", "statistics_file", "step_generator", "StepDraws", "to_uint8", "train", "train_step",
    "TrainingJob", "TrainingTask", "uint8_to_tensor", "unwrap", "velocity_field", "wrap_model", "write_npz",
]
