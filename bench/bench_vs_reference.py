"""Our training step and sampling against the reference implementation's own classes, in one process.

    python bench/bench_vs_reference.py --reference /work/ref/RAE [--repeats 3] [--threads N]

The reference source (a checkout of bytetriper/RAE) is imported from the path given; without ``--reference``
the bench prints that it was skipped and exits 0. Both sides get the same weights (ours are built from the
reference model's state dict through ``rae_framework.interop.load_official``), the same inputs and the same
threads, and their repeats are interleaved (ours, reference, ours, ...), so load on a shared machine hits
both alike. Printed: the median seconds of each and the ratio reference / ours (> 1: ours is faster).

Work timed (DiT^DH-S on 768 x 16 x 16 latents, the reference's ImageNet-256 config):

* a training step, batch 4, fp32 and under bf16 autocast: loss, backward, clip at 1.0, AdamW, EMA. Ours is
  the engine's step (draws keyed by the step, ``loss_at``, ``clip_gradients``, ``build_optimizer``, ``EMA``);
  the reference's is its ``train.py`` loop body (reference: src/train.py:L396-L419): ``training_losses``,
  ``clip_grad_norm_``, its ``build_optimizer`` (fused AdamW, src/utils/optim_utils.py:L33) and ``update_ema``
  (src/utils/train_utils.py:L68);
* Euler sampling with autoguidance (scale 1.42, a second DiT^DH-S as the guide) and with CFG on [0, 1]
  (scale 4): ours through the ``euler`` sampler and the guidance components, the reference's through its
  ``Sampler.sample_ode`` with ``forward_with_autoguidance`` / ``forward_with_cfg`` on the doubled batch its
  ``sample.py`` builds (reference: src/sample.py:L75-L102).

What the reference needs beyond this project's environment is handled here, not in the framework: its
``src/`` goes on ``sys.path``; ``einops`` (its requirement) must be installed; ``omegaconf``, imported by
its ``train_utils`` for config helpers this bench does not call, is replaced by an empty module when absent;
its CUDA autocast (``torch.cuda.amp.autocast``) becomes the CPU autocast of the same dtype.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
from pathlib import Path
import statistics
import sys
import time
import types
from collections.abc import Callable

import torch

import rae_framework
from rae_framework import compat
from rae_framework.interop import load_official

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import engine_step  # noqa: E402  (this folder's shared helpers)

# reference: configs/stage2/training/ImageNet256/DiTDH-S_DINOv2-B.yaml (stage_2.params)
DIT_DH_S = {"input_size": 16, "patch_size": 1, "in_channels": 768, "hidden_size": [384, 2048], "depth": [12, 2],
            "num_heads": [6, 16], "mlp_ratio": 4.0, "class_dropout_prob": 0.1, "num_classes": 1000,
            "use_qknorm": False, "use_swiglu": True, "use_rope": True, "use_rmsnorm": True, "wo_shift": False,
            "use_pos_embed": True}
# a DiT^DH of the same structure small enough for a test of this script (--tiny)
TINY = {**DIT_DH_S, "input_size": 4, "in_channels": 16, "hidden_size": [32, 48], "depth": [2, 1],
        "num_heads": [2, 2], "num_classes": 10}
LR, EMA_DECAY, CLASS_DROPOUT, AG_SCALE, CFG_SCALE = 2e-4, 0.9995, 0.1, 1.42, 4.0  # LR and EMA as benchlib's


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, help="checkout of bytetriper/RAE (its src/ is imported)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side and task (median)")
    parser.add_argument("--batch", type=int, default=4, help="training batch")
    parser.add_argument("--sample-batch", type=int, default=2, help="images per sampling run")
    parser.add_argument("--grid", type=int, default=4, help="Euler grid points (grid - 1 steps)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help="tiny model (tests this script, not a benchmark)")
    return parser.parse_args(argv)


def import_reference(root: Path) -> types.SimpleNamespace:
    """The reference's classes and functions that the bench times, imported from ``root/src``."""
    compat.ensure_torchvision_importable()  # timm, which the reference imports, imports torchvision
    try:
        import omegaconf  # noqa: F401  (only its train_utils' config helpers use it)
    except ImportError:
        sys.modules["omegaconf"] = types.SimpleNamespace(OmegaConf=object, DictConfig=object)
    sys.path.insert(0, str(root / "src"))
    from stage2.models.DDT import DiTwDDTHead
    from stage2.transport import Sampler, create_transport
    from utils.optim_utils import build_optimizer as reference_optimizer
    from utils.train_utils import update_ema

    return types.SimpleNamespace(DiTwDDTHead=DiTwDDTHead, Sampler=Sampler, create_transport=create_transport,
                                 build_optimizer=reference_optimizer, update_ema=update_ema)


def model_pair(ref: types.SimpleNamespace, kwargs: dict, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reference model, ours) with equal weights: the reference's init plus N(0, 0.02^2) on every weight, so
    the zero-initialised adaLN and output layers do real work."""
    torch.manual_seed(seed)
    reference = ref.DiTwDDTHead(**kwargs)
    with torch.no_grad():
        for param in reference.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param), alpha=0.02)
    return reference, load_official("DiTwDDTHead", kwargs, reference.state_dict())


def autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """CPU autocast in ``dtype``, or nothing for fp32."""
    return torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()


def latent_shape(kwargs: dict) -> tuple[int, int, int]:
    """``(C, h, w)`` of the model's latents."""
    return kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"]


def shift_of(kwargs: dict) -> float:
    """The reference's dimension-dependent shift sqrt(C*h*w / 4096) (src/train.py, time_dist_shift_dim)."""
    return math.sqrt(math.prod(latent_shape(kwargs)) / 4096)


def our_schedule(kwargs: dict):
    """shifted-flow with the shift derived from the latent shape, logit-normal times (the reference's)."""
    return rae_framework.build("schedule", "shifted-flow", {"latent_shape": list(latent_shape(kwargs)),
                                                             "time_distribution": "logit-normal"})


def reference_train_step(ref, model, kwargs: dict, x, y, dtype) -> Callable[[], None]:
    """The reference's loop body (src/train.py:L396-L419) with its own transport, optimiser and EMA."""
    transport = ref.create_transport(path_type="Linear", prediction="velocity", time_dist_type="logit-normal_0_1",
                                     time_dist_shift=max(1.0, shift_of(kwargs)))
    optimizer, _ = ref.build_optimizer([p for p in model.parameters() if p.requires_grad], {"optimizer": {"lr": LR}})
    ema_model = copy.deepcopy(model).requires_grad_(False)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(dtype):
            loss = transport.training_losses(model, x, {"y": y})["loss"].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ref.update_ema(ema_model, model, decay=EMA_DECAY)

    return step


def our_sampling(model, guide, kwargs: dict, noise, labels, grid: int, method: str) -> Callable[[], object]:
    """Euler over ``grid`` points with our ``autoguidance`` or ``cfg`` component (guided on [0, 1])."""
    sampler = rae_framework.build("sampler", "euler", {"num_steps": grid})
    scale = AG_SCALE if method == "autoguidance" else CFG_SCALE
    guidance = rae_framework.build("guidance", method, {"scale": scale, "t_min": 0.0, "t_max": 1.0})
    schedule = our_schedule(kwargs)
    field = guidance.velocity(model, labels, guide=guide if method == "autoguidance" else None)

    @torch.no_grad()
    def run():
        return sampler.sample(field, noise, schedule).samples

    return run


def reference_sampling(ref, model, guide, kwargs: dict, noise, labels, grid: int,
                       method: str) -> Callable[[], object]:
    """The reference's sample.py path: doubled batch [z; z] with labels [y; null], its Euler ODE."""
    transport = ref.create_transport(path_type="Linear", prediction="velocity",
                                     time_dist_shift=max(1.0, shift_of(kwargs)))
    sample_fn = ref.Sampler(transport).sample_ode(sampling_method="euler", num_steps=grid)
    z = torch.cat([noise, noise])  # (2B, C, h, w)
    y = torch.cat([labels, torch.full_like(labels, kwargs["num_classes"])])  # (2B,)
    if method == "autoguidance":
        forward, extra = model.forward_with_autoguidance, {"cfg_scale": AG_SCALE, "additional_model_forward": guide}
    else:
        forward, extra = model.forward_with_cfg, {"cfg_scale": CFG_SCALE}

    @torch.no_grad()
    def run():
        return sample_fn(z, forward, y=y, cfg_interval=(0.0, 1.0), **extra)[-1]

    return run


def interleaved_medians(ours: Callable, theirs: Callable, repeats: int) -> tuple[float, float, tuple]:
    """Median seconds of each after one warm-up call each, calls alternating ours/theirs; also returns the
    warm-up calls' results."""
    results = ours(), theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, store in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            fn()
            store.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), results


def report(task: str, ours: Callable, theirs: Callable, repeats: int) -> float:
    """Time one task and print its line; returns the ratio reference / ours. Sampling tasks (whose calls
    return samples) also print the largest difference of our samples from the reference's first half."""
    our_seconds, reference_seconds, (our_out, reference_out) = interleaved_medians(ours, theirs, repeats)
    ratio = reference_seconds / our_seconds
    agreement = "" if our_out is None else f" max abs diff {(our_out - reference_out[:len(our_out)]).abs().max():.1e}"
    print(f"| {task}{agreement} | {our_seconds:.3f} | {reference_seconds:.3f} | {ratio:.2f} | "
          f"{os.getloadavg()[0]:.1f} |", flush=True)
    return ratio


def training_rows(ref, kwargs: dict, args: argparse.Namespace) -> dict[str, float]:
    """fp32 and bf16 train-step ratios (fresh model pair per dtype, so both start from equal weights)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, *latent_shape(kwargs), generator=generator)  # (B, C, h, w)
    y = torch.randint(0, kwargs["num_classes"], (args.batch,), generator=generator)
    ratios = {}
    for label, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
        reference, ours = model_pair(ref, kwargs, seed=0)
        task = f"train step, batch {args.batch}, {label}"
        ratios[task] = report(task, engine_step(ours, our_schedule(kwargs), x, y, dtype, CLASS_DROPOUT),
                              reference_train_step(ref, reference, kwargs, x, y, dtype), args.repeats)
    return ratios


def sampling_rows(ref, kwargs: dict, args: argparse.Namespace) -> dict[str, float]:
    """Euler with autoguidance and with CFG on [0, 1], fp32, eval mode."""
    (reference, ours), (reference_guide, our_guide) = model_pair(ref, kwargs, 0), model_pair(ref, kwargs, 1)
    for model in (reference, ours, reference_guide, our_guide):
        model.eval()
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(args.sample_batch, *latent_shape(kwargs), generator=generator)  # (B, C, h, w)
    labels = torch.randint(0, kwargs["num_classes"], (args.sample_batch,), generator=generator)
    ratios = {}
    for method in ("autoguidance", "cfg"):
        task = f"Euler {args.grid} points + {method} on [0, 1], {args.sample_batch} images, fp32"
        ratios[task] = report(task, our_sampling(ours, our_guide, kwargs, noise, labels, args.grid, method),
                              reference_sampling(ref, reference, reference_guide, kwargs, noise, labels, args.grid,
                                                 method), args.repeats)
    return ratios


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print the table; returns ``{task: reference seconds / our seconds}`` (empty when skipped)."""
    args = parse_args(argv)
    if args.reference is None or not (args.reference / "src" / "stage2").is_dir():
        print(f"bench_vs_reference: skipped (give --reference PATH to a checkout of bytetriper/RAE; "
              f"got {args.reference})")
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    ref, kwargs = import_reference(args.reference), TINY if args.tiny else DIT_DH_S
    print(f"{'tiny DiT^DH' if args.tiny else 'DiT^DH-S'}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats (median), load average {os.getloadavg()[0]:.1f} at start")
    print("| work | ours (s) | reference (s) | reference / ours | load |\n| --- | --- | --- | --- | --- |")
    return {**training_rows(ref, kwargs, args), **sampling_rows(ref, kwargs, args)}


if __name__ == "__main__":
    main()
