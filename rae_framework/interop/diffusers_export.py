"""Export our autoencoder as a diffusers ``AutoencoderRAE`` folder: the inverse of ``load_diffusers_rae``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from rae_framework.errors import ConfigError
from rae_framework.interop.official_rae import DECODER_RENAMES, DIFFUSERS_ENCODERS, QKV_PATTERN

ENCODER_TYPES = {ours: theirs for theirs, (ours, _) in DIFFUSERS_ENCODERS.items()}


def encoder_config(rae: Any) -> dict[str, Any]:
    """The ``AutoencoderRAE`` encoder fields of our encoder; error for encoders diffusers cannot express."""
    name = getattr(rae.encoder, "registry_name", None) or _encoder_name(rae.encoder)
    hf = getattr(getattr(rae.encoder, "model", None), "config", None)
    if name not in ENCODER_TYPES or hf is None:
        raise ConfigError(f"diffusers export: encoder {name!r} is not supported (AutoencoderRAE expresses only "
                          f"{sorted(ENCODER_TYPES)} built from transformers configs)")
    if hf.hidden_size // hf.num_attention_heads != 64:
        raise ConfigError("diffusers export: AutoencoderRAE assumes an encoder head dim of 64")
    return {"encoder_type": ENCODER_TYPES[name], "encoder_hidden_size": hf.hidden_size,
            "encoder_patch_size": hf.patch_size, "encoder_num_hidden_layers": hf.num_hidden_layers,
            "encoder_input_size": rae.encoder.config.input_size,
            "encoder_norm_mean": list(rae.encoder.image_mean), "encoder_norm_std": list(rae.encoder.image_std)}


def _encoder_name(encoder: Any) -> str:
    """Our registry name from the encoder's module (``rae_encoders.dinov2`` -> ``dinov2``)."""
    return type(encoder).__module__.rpartition(".")[2]


def diffusers_latent_stats(rae: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Our ``(mean, var)`` as diffusers' ``(latents_mean, latents_std)`` with scaling factor 1."""
    std = (rae.latent_var + rae.config.latent_eps).sqrt() - 1e-5  # (C, h, w): z / (std + 1e-5)
    return rae.latent_mean.float(), std.float()


def diffusers_config(rae: Any) -> dict[str, Any]:
    """The ``AutoencoderRAE`` constructor config of our autoencoder."""
    dec = rae.decoder.config
    mean, std = diffusers_latent_stats(rae)
    return {**encoder_config(rae), "decoder_hidden_size": dec.hidden_size,
            "decoder_num_hidden_layers": dec.num_layers, "decoder_num_attention_heads": dec.num_heads,
            "decoder_intermediate_size": dec.intermediate_size, "patch_size": dec.patch_size,
            "num_channels": dec.out_channels, "noise_tau": rae.config.noise_tau, "reshape_to_2d": True,
            "latents_mean": mean.tolist(), "latents_std": std.tolist(), "scaling_factor": 1.0}


def _decoder_tensor(key: str, ours: dict[str, torch.Tensor]) -> torch.Tensor:
    """The diffusers decoder tensor ``key`` (without ``decoder.``) from our decoder state dict."""
    match = QKV_PATTERN.match(key)
    if match:
        layer, part, kind = match.group(1), (match.group(2) or match.group(3))[0], match.group(4)
        return ours[f"blocks.{layer}.attn.qkv.{kind}"].chunk(3, dim=0)["qkv".index(part)]
    for pattern, replacement in DECODER_RENAMES:
        key = re.sub(pattern, replacement, key)
    return ours[key]


def diffusers_state_dict(rae: Any, keys: list[str]) -> dict[str, torch.Tensor]:
    """Our weights under diffusers' ``keys`` (taken from a meta-device ``AutoencoderRAE``)."""
    encoder, decoder = rae.encoder.state_dict(), rae.decoder.state_dict()
    mean, std = diffusers_latent_stats(rae)
    special = {"encoder_mean": rae.image_mean, "encoder_std": rae.image_std,
               "_latents_mean": mean, "_latents_std": std}
    state = {}
    for key in keys:
        head, _, rest = key.partition(".")
        if key in special:
            state[key] = special[key]
        elif head == "encoder":
            state[key] = encoder[f"model.{rest}"]
        else:
            state[key] = _decoder_tensor(rest, decoder)
    return {k: v.detach().float().contiguous().clone() for k, v in state.items()}


def export_diffusers_vae(rae: Any, out_dir: str | Path) -> Path:
    """Write ``out_dir`` (config.json + diffusion_pytorch_model.safetensors) for ``AutoencoderRAE``."""
    from diffusers import AutoencoderRAE
    from safetensors.torch import save_file

    config = diffusers_config(rae)
    with torch.device("meta"):
        reference = AutoencoderRAE(**config)
    state = diffusers_state_dict(rae, list(reference.state_dict()))
    for key, tensor in reference.state_dict().items():
        state[key] = state[key].reshape(tensor.shape)  # e.g. encoder_mean (1, 3, 1, 1)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    full = {"_class_name": "AutoencoderRAE", **dict(reference.config), **config}
    (folder / "config.json").write_text(json.dumps(full, indent=2, default=list) + "\n")
    return folder
