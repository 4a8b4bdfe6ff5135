"""Export our autoencoder as a diffusers ``AutoencoderRAE`` folder: the inverse of ``load_diffusers_rae``.

The folder holds what diffusers reads (``config.json``, ``diffusion_pytorch_model.safetensors``) and, beside
it, ``rae_framework.safetensors``: the tensors that diffusers' format carries only approximately (our latent
``mean``/``var``, which diffusers turns into ``latents_std``, and the decoder's position table, which diffusers
regenerates), so that :func:`load_exported_rae` gives back our autoencoder bit for bit. Anything diffusers
cannot express exactly (an encoder it does not build, an encoder config it would build differently, a
position table other than the one it regenerates) is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from rae_framework.errors import ConfigError
from rae_framework.interop.official_rae import DECODER_RENAMES, DIFFUSERS_ENCODERS, QKV_PATTERN

ENCODER_TYPES = {ours: theirs for theirs, (ours, _) in DIFFUSERS_ENCODERS.items()}


def encoder_config(rae: Any, encoder_name: str | None = None) -> dict[str, Any]:
    """The ``AutoencoderRAE`` encoder fields of our encoder; error for encoders diffusers cannot express."""
    name = encoder_name or getattr(rae.encoder, "registry_name", None) or _encoder_name(rae.encoder)
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


# HF config fields that describe a checkpoint, not the computation
HF_METADATA_FIELDS = {"_name_or_path", "architectures", "torch_dtype", "dtype", "transformers_version",
                      "_attn_implementation", "_attn_implementation_autoset", "attn_implementation", "id2label",
                      "label2id", "return_dict", "output_hidden_states", "output_attentions", "use_cache"}
EXACT_FILE = "rae_framework.safetensors"
POS_EMBED_TOLERANCE = 1e-6  # float32 rounding between two computations of the same sin-cos table


def check_encoder_architecture(ours: Any, theirs: Any) -> None:
    """Our encoder's HF config against the one ``AutoencoderRAE`` builds from its few fields: any other
    difference (layer-norm eps, MLP width, register count, HF image size ...) is an error naming the fields."""
    mine, reference = ours.to_dict(), theirs.to_dict()
    differ = sorted(key for key in set(mine) | set(reference)
                    if key not in HF_METADATA_FIELDS and mine.get(key) != reference.get(key))
    if differ:
        shown = ", ".join(f"{key}: ours {mine.get(key)!r}, AutoencoderRAE {reference.get(key)!r}" for key in differ)
        raise ConfigError(f"diffusers export: AutoencoderRAE would build a different encoder ({shown}); it builds "
                          "the encoder from encoder_type, hidden size, patch size and depth only")


def check_pos_embed(decoder: Any) -> None:
    """Our decoder's position table against the sin-cos table ``AutoencoderRAE`` regenerates (and never loads):
    they agree for a 16 x 16 token grid and an untrained table."""
    from rae_framework.interop.official_rae import diffusers_pos_embed

    theirs = diffusers_pos_embed(decoder.pos_embed.shape)
    gap = (decoder.pos_embed.detach().float().cpu() - theirs).abs().max().item()
    if gap > POS_EMBED_TOLERANCE:
        grid = math.isqrt(decoder.pos_embed.shape[1] - 1)
        raise ConfigError(f"diffusers export: AutoencoderRAE regenerates the decoder's position table (sin-cos over "
                          f"a 16 x 16 grid scaled to the token grid) instead of loading it; this decoder's table "
                          f"(token grid {grid} x {grid}) differs from it by up to {gap:.3g}, so diffusers would "
                          "decode differently. Only decoders on a 16 x 16 token grid with the fixed table export")


def _encoder_name(encoder: Any) -> str:
    """Our registry name from the encoder's module (``rae_encoders.dinov2`` -> ``dinov2``)."""
    return type(encoder).__module__.rpartition(".")[2]


def diffusers_latent_stats(rae: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Our ``(mean, var)`` as diffusers' ``(latents_mean, latents_std)`` with scaling factor 1."""
    std = (rae.latent_var + rae.config.latent_eps).sqrt() - 1e-5  # (C, h, w): z / (std + 1e-5)
    return rae.latent_mean.float(), std.float()


def diffusers_config(rae: Any, encoder_name: str | None = None) -> dict[str, Any]:
    """The ``AutoencoderRAE`` constructor config of our autoencoder."""
    dec = rae.decoder.config
    mean, std = diffusers_latent_stats(rae)
    return {**encoder_config(rae, encoder_name), "decoder_hidden_size": dec.hidden_size,
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


def export_diffusers_vae(rae: Any, out_dir: str | Path, encoder_name: str | None = None) -> Path:
    """Write ``out_dir`` (config.json + diffusion_pytorch_model.safetensors) for ``AutoencoderRAE``, and the
    exact tensors beside them; ``encoder_name`` is the encoder's registered name (default: from its module)."""
    from safetensors.torch import save_file

    autoencoder_class = diffusers_autoencoder_class()
    config = diffusers_config(rae, encoder_name)
    with torch.device("meta"):
        reference = autoencoder_class(**config)
    check_encoder_architecture(rae.encoder.model.config, reference.encoder.config)
    check_pos_embed(rae.decoder)
    state = diffusers_state_dict(rae, list(reference.state_dict()))
    for key, tensor in reference.state_dict().items():
        state[key] = state[key].reshape(tensor.shape)  # e.g. encoder_mean (1, 3, 1, 1)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    full = {"_class_name": "AutoencoderRAE", **dict(reference.config), **config}
    (folder / "config.json").write_text(json.dumps(full, indent=2, default=list) + "\n")
    save_file(exact_tensors(rae), str(folder / EXACT_FILE),
              metadata={"autoencoder": rae.config.model_dump_json(exclude={"statistics"})})
    return folder


def diffusers_autoencoder_class() -> type:
    """diffusers' ``AutoencoderRAE`` (the export builds it to take its keys); a clear error without diffusers."""
    from rae_framework import compat

    compat.ensure_torchvision_importable()
    try:
        from diffusers import AutoencoderRAE
    except ImportError as error:
        raise ConfigError(f"diffusers export needs diffusers >= 0.36 with AutoencoderRAE ({error}); "
                          "install it with 'pip install \"diffusers>=0.36\"'") from None
    return AutoencoderRAE


def exact_tensors(rae: Any) -> dict[str, torch.Tensor]:
    """What ``load_exported_rae`` needs beyond diffusers' file to rebuild ``rae`` exactly."""
    return {"latent_mean": rae.latent_mean, "latent_var": rae.latent_var, "pos_embed": rae.decoder.pos_embed}


def load_exported_rae(folder: str | Path) -> Any:
    """Our autoencoder from a folder :func:`export_diffusers_vae` wrote: the architecture and weights through
    :func:`load_diffusers_rae`, then the exact statistics, position table and autoencoder settings."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.config import AutoencoderConfig
    from rae_framework.interop.official_rae import load_diffusers_rae

    folder = Path(folder)
    files = [folder / name for name in ("config.json", "diffusion_pytorch_model.safetensors", EXACT_FILE)]
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: missing; an exported vae/ folder holds config.json, "
                              f"diffusion_pytorch_model.safetensors and {EXACT_FILE} ('rae export' writes them)")
    exact = load_file(str(files[2]))
    state = {**load_file(str(files[1])), "decoder.decoder_pos_embed": exact["pos_embed"]}  # diffusers not needed
    rae = load_diffusers_rae(json.loads(files[0].read_text(encoding="utf-8")), state)
    with safe_open(str(files[2]), framework="pt") as handle:
        settings = AutoencoderConfig.model_validate_json(handle.metadata()["autoencoder"])
    rae = RepresentationAutoencoder(rae.encoder, rae.decoder, settings)
    rae.set_statistics(exact["latent_mean"], exact["latent_var"])
    return rae.eval()
