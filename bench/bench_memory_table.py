"""Per-GPU training memory of DiT^DH-XL, DDP against FSDP2, from the real model.

    python bench/bench_memory_table.py [--share 128] [--gpus 8] [--skip-activations]

Parameters are counted on a meta-device build of the ``dit-dh-xl`` preset (no memory). Activations are
measured: the bytes autograd saves for the backward (distinct storages) in bf16-autocast forwards on the
CPU, per sample (see :func:`activation_bytes_per_sample`), times the per-GPU share. Model states, fp32: weights 4 B, gradients 4 B,
AdamW moments 8 B, EMA 4 B per parameter. DDP keeps all of them on every GPU; FSDP2 (``fully_shard``)
shards them over the GPUs but not the activations, which each GPU holds for its own share either way.
"""

from __future__ import annotations

import argparse

import torch

import rae_framework

GB = 1e9
STATE_BYTES = {"weights": 4, "gradients": 4, "AdamW moments": 8, "EMA": 4}


def build_xl(input_size: int, device: str) -> torch.nn.Module:
    """The DiT^DH-XL preset with ``input_size`` x ``input_size`` latent tokens, on ``device``."""
    with torch.device(device):
        return rae_framework.build("denoiser", "dit-dh", {"input_size": input_size, "num_classes": 1000},
                                   preset="dit-dh-xl")


def saved_bytes(model: torch.nn.Module, batch: int, input_size: int) -> int:
    """Bytes of the distinct storages autograd saves for the backward of a ``batch`` (bf16 autocast)."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    x = torch.randn(batch, 768, input_size, input_size)  # (B, C, h, w)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        model(x, torch.rand(batch), torch.arange(batch))
    return sum(seen.values())


def activation_bytes_per_sample(sizes: tuple[int, ...]) -> dict[int, int]:
    """Activation bytes per sample for each latent side in ``sizes``. The first side is measured as batch 2
    minus batch 1, which also gives the batch-independent part (the bf16 weight copies autocast saves);
    the others, at batch 1 minus that part (one sample of 1024 tokens is all a shared CPU can hold)."""
    model = build_xl(sizes[0], "cpu").train()
    one = saved_bytes(model, 1, sizes[0])
    per_sample = {sizes[0]: saved_bytes(model, 2, sizes[0]) - one}
    fixed = one - per_sample[sizes[0]]
    del model
    for size in sizes[1:]:
        per_sample[size] = saved_bytes(build_xl(size, "cpu").train(), 1, size) - fixed
    return per_sample


def table(parameters: int, activations: dict[str, float], share: int, gpus: int) -> str:
    """The markdown table: one row per memory item, DDP and FSDP2 columns per latent size."""
    states = {name: parameters * size / GB for name, size in STATE_BYTES.items()}
    header = "| per GPU (GB) | " + " | ".join(f"DDP, {k} | FSDP2 x{gpus}, {k}" for k in activations) + " |"
    lines = [header, "|" + " --- |" * (1 + 2 * len(activations))]
    for name, size in states.items():
        lines.append(f"| {name} | " + " | ".join(f"{size:.1f} | {size / gpus:.1f}" for _ in activations) + " |")
    lines.append(f"| activations, share {share} (bf16) | "
                 + " | ".join(f"{value:.1f} | {value:.1f}" for value in activations.values()) + " |")
    total = sum(states.values())
    lines.append("| **total** | " + " | ".join(f"**{total + value:.1f}** | **{total / gpus + value:.1f}**"
                                                for value in activations.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=int, default=128, help="samples per GPU per step (1024 / 8 GPUs)")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--skip-activations", action="store_true", help="parameters only (no CPU forward)")
    args = parser.parse_args()
    parameters = sum(p.numel() for p in build_xl(16, "meta").parameters())
    print(f"DiT^DH-XL: {parameters / 1e6:.1f} M parameters (meta-device build of the dit-dh-xl preset)")
    activations = {}
    if not args.skip_activations:
        for size, per_sample in activation_bytes_per_sample((16, 32)).items():
            print(f"activations saved for backward, {size}x{size} tokens: {per_sample / 1e6:.0f} MB per sample")
            activations[f"{size}x{size} tokens"] = per_sample * args.share / GB
    print(table(parameters, activations or {"16x16 tokens": 0.0}, args.share, args.gpus))


if __name__ == "__main__":
    main()
