"""The run engine: ``run_assembly(assembly, out_dir)`` runs the stages of an assembly (see ``runner``).

Run directory::

    assembly.yaml                 the resolved assembly (presets merged, derived values filled)
    log.txt, metrics.csv          text log; one row per logged scalar (time, stage, step, name, value)
    tensorboard/                  the same scalars as TensorBoard events
    checkpoints/<stage>/step_N/   training checkpoints (model/ema/... .safetensors + state.pt), keep-last-N
    checkpoints/*.safetensors     final weights: decoder(_ema), latent_stats, denoiser(_ema)
    latent_cache/<key>/           the encoded training set (memory-mapped .npy), when no shared cache folder is set
    reconstructions/step_N.png    stage 1: held-out originals (top) over EMA reconstructions (bottom)
    samples/samples.npz, grid.png ADM layout (arr_0 uint8 (N, H, W, 3), arr_1 int64); one grid row per class
    metrics.json                  evaluation results
    stages/<stage>/stage_state.json  input hash + output hashes: a stage whose inputs are unchanged is skipped

Determinism: data order and augmentation are a pure function of ``(seed, epoch)``; every random draw of a
training step comes from a generator seeded by ``(seed, step)`` for the whole global batch; components are
built under a per-role seed. Hence a run killed at any point and resumed, a run with gradient accumulation,
and a DDP run produce the same weights as one uninterrupted single-process run (bit-identical for resume).
"""
