"""Import of the reference stage-1 model (bytetriper/RAE ``GeneralDecoder`` and ``RAE``) and its files.

``load_general_decoder(params, state_dict)``: ``params`` is the reference decoder config (the ViTMAE-style
dict: ``hidden_size`` = token dim, ``decoder_hidden_size``, ``decoder_num_hidden_layers``,
``decoder_num_attention_heads``, ``decoder_intermediate_size``, ``patch_size``, ``num_channels``,
``image_size``, ``num_patches`` (optional: ``(image_size / patch_size)^2``), ``hidden_act`` ("gelu"),
``layer_norm_eps``, ``qkv_bias``); ``state_dict`` a flat ``GeneralDecoder`` state dict (the released
``model.pt``), loaded strictly (the reference's ``strict=False`` hides missing keys).

``load_rae(params, state_dict)``: ``params`` mirrors the reference ``RAE(...)`` kwargs, with the files the
reference reads from paths given as data::

    encoder_cls          "Dinov2withNorm" | "SigLIP2wNorm" | "MAEwNorm"
    encoder_config       the encoder's HF config dict (replaces encoder_config_path)
    image_mean, image_std  the encoder processor's mean/std (replaces the AutoImageProcessor)
    encoder_input_size   224
    decoder_config       the GeneralDecoder config dict (replaces decoder_config_path)
    decoder_patch_size   16
    noise_tau            0.8
    reshape_to_2d        True (False is not supported)
    stats                {"mean", "var"} tensors or a stat-file path (replaces normalization_stat_path); optional
    eps                  1e-5
    encoder_params       accepted for compatibility ({"normalize": True} is the only behaviour)

``state_dict`` is the whole RAE state dict of a stage-1 checkpoint (``model``/``ema``: ``encoder.<wrapper>.<HF
keys>`` + ``decoder.<GeneralDecoder keys>``); without it the encoder and decoder keep random weights.
Encoder keys of any transformers version load (transformers converts them); the final LayerNorm affine is
not part of the model (the paper's affine-free encoder normalisation).
"""

from __future__ import annotations

import inspect
import math
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rae_framework.errors import ConfigError
from rae_framework.files import read_tensor_file
from rae_framework.interop.official_dit import check_state_dict, strip_wrapper_prefixes

ENCODER_CLASSES = {"Dinov2withNorm": "dinov2", "SigLIP2wNorm": "siglip2", "MAEwNorm": "mae"}
RAE_KWARGS = {"encoder_cls", "encoder_config", "image_mean", "image_std", "encoder_input_size", "decoder_config",
              "decoder_patch_size", "noise_tau", "reshape_to_2d", "stats", "eps", "encoder_params"}

# reference GeneralDecoder (HF ViT layer names) and diffusers RAEDecoder -> our ViTDecoder
DECODER_RENAMES = [
    (r"^decoder_pos_embed$", "pos_embed"), (r"^trainable_cls_token$", "cls_token"),
    (r"^decoder_embed\.", "embed."), (r"^decoder_norm\.", "norm."), (r"^decoder_pred\.", "head."),
    (r"^decoder_layers\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^decoder_layers\.(\d+)\.attention\.to_out\.0\.", r"blocks.\1.attn.proj."),
    (r"^decoder_layers\.(\d+)\.intermediate\.dense\.", r"blocks.\1.fc1."),
    (r"^decoder_layers\.(\d+)\.output\.dense\.", r"blocks.\1.fc2."),
    (r"^decoder_layers\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^decoder_layers\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
]
QKV_PATTERN = re.compile(r"^decoder_layers\.(\d+)\.attention\.(?:attention\.(query|key|value)|to_(q|k|v))\."
                         r"(weight|bias)$")


def general_decoder_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Reference decoder config -> ``vit`` decoder params."""
    if params.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(f"GeneralDecoder: hidden_act {params['hidden_act']!r} is not supported (only 'gelu')")
    num_patches = params.get("num_patches") or (params["image_size"] // params["patch_size"]) ** 2
    return {"token_dim": params["hidden_size"], "num_patches": num_patches,
            "hidden_size": params["decoder_hidden_size"], "num_layers": params["decoder_num_hidden_layers"],
            "num_heads": params["decoder_num_attention_heads"],
            "intermediate_size": params["decoder_intermediate_size"], "patch_size": params["patch_size"],
            "out_channels": params.get("num_channels", 3), "layer_norm_eps": params.get("layer_norm_eps", 1e-12),
            "qkv_bias": params.get("qkv_bias", True)}


def convert_decoder_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GeneralDecoder keys (reference or diffusers naming) -> ours; q/k/v fused into ``attn.qkv``."""
    converted: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        match = QKV_PATTERN.match(key)
        if match:
            layer, part, kind = match.group(1), (match.group(2) or match.group(3))[0], match.group(4)
            qkv.setdefault((layer, kind), {})[part] = value
            continue
        for pattern, replacement in DECODER_RENAMES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ConfigError(f"decoder layer {layer}: incomplete q/k/v {kind} (have {sorted(parts)})")
        converted[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return converted


def load_decoder_weights(decoder: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load a GeneralDecoder state dict into our ``vit`` decoder."""
    converted = convert_decoder_state_dict(state_dict)
    check_state_dict(decoder, converted, source)
    decoder.load_state_dict(converted, strict=True)


def load_general_decoder(params: Mapping[str, Any], state_dict: Mapping[str, Any] | None = None) -> Any:
    """``vit`` decoder equivalent of reference ``GeneralDecoder(config, num_patches)`` with its weights."""
    from rae_framework import build

    decoder = build("decoder", "vit", general_decoder_params(params))
    if state_dict is not None:
        load_decoder_weights(decoder, state_dict, "GeneralDecoder")
    return decoder


def hf_architecture(encoder_config: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture fields of an HF config dict (constructor arguments of its config class)."""
    from transformers import CONFIG_MAPPING

    model_type = encoder_config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"RAE: encoder_config has unknown model_type {model_type!r}")
    accepted = set(inspect.signature(CONFIG_MAPPING[model_type].__init__).parameters) - {"self", "kwargs"}
    return {key: value for key, value in encoder_config.items() if key in accepted}


def split_rae_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """``encoder.<wrapper>.<HF key>`` / ``decoder.<key>`` -> (HF encoder state dict, decoder state dict)."""
    encoder, decoder = {}, {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        part, _, rest = key.partition(".")
        if part == "encoder":
            encoder[rest.partition(".")[2]] = value  # drop the reference wrapper's attribute name
        elif part == "decoder":
            decoder[rest] = value
        else:
            raise ConfigError(f"RAE state dict: unexpected key {key!r} (expected encoder.* or decoder.*)")
    return encoder, decoder


def encoder_params(params: Mapping[str, Any], weights: str | None) -> dict[str, Any]:
    """Our encoder params for the reference encoder (architecture from the HF config dict)."""
    config = params["encoder_config"]
    built = {"input_size": params.get("encoder_input_size", 224), "overrides": hf_architecture(config),
             "pretrained": weights is not None, "weights": weights, "allow_download": False}
    if "image_mean" in params:
        built["image_mean"] = [float(v) for v in torch.as_tensor(params["image_mean"]).flatten()]
    if "image_std" in params:
        built["image_std"] = [float(v) for v in torch.as_tensor(params["image_std"]).flatten()]
    if ENCODER_CLASSES[params["encoder_cls"]] == "dinov2":
        built["registers"] = config.get("model_type") == "dinov2_with_registers"
    return built


def rae_statistics(stats: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The reference stats (dict or stat-file path) -> ``(mean, var)``."""
    if stats is None:
        return None, None
    if isinstance(stats, (str, Path)):
        from rae_framework.engine.statistics import load_statistics

        return load_statistics(stats)
    return stats.get("mean"), stats.get("var")


def check_rae_params(params: Mapping[str, Any]) -> None:
    """Unknown kwargs, unsupported encoder classes and ``reshape_to_2d: False`` are errors."""
    unknown = sorted(set(params) - RAE_KWARGS)
    if unknown:
        raise ConfigError(f"RAE: unknown argument(s) {unknown}; known: {sorted(RAE_KWARGS)}")
    if params.get("encoder_cls", "Dinov2withNorm") not in ENCODER_CLASSES:
        raise ConfigError(f"RAE: encoder_cls {params['encoder_cls']!r} is not one of {sorted(ENCODER_CLASSES)}")
    if not params.get("reshape_to_2d", True):
        raise ConfigError("RAE: reshape_to_2d=False is not supported (latents are always (B, C, h, w))")
    for required in ("encoder_config", "decoder_config"):
        if required not in params:
            raise ConfigError(f"RAE: '{required}' is required (an HF / GeneralDecoder config dict)")


def build_encoder(params: Mapping[str, Any], encoder_state: Mapping[str, torch.Tensor] | None) -> Any:
    """Our encoder for the reference one, with its weights written to a temporary safetensors file."""
    from safetensors.torch import save_file

    from rae_framework import build

    name = ENCODER_CLASSES[params.get("encoder_cls", "Dinov2withNorm")]
    if not encoder_state:
        return build("encoder", name, encoder_params(params, None))
    with tempfile.TemporaryDirectory() as folder:
        file = str(Path(folder) / "encoder.safetensors")
        save_file({key: value.contiguous() for key, value in encoder_state.items()}, file)
        return build("encoder", name, encoder_params(params, file))


def load_rae(params: Mapping[str, Any], state_dict: Mapping[str, Any] | None = None) -> Any:
    """:class:`RepresentationAutoencoder` equivalent of reference ``RAE(**params)`` with its weights."""
    from rae_framework import build
    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.config import AutoencoderConfig

    check_rae_params(params)
    encoder_state, decoder_state = split_rae_state_dict(state_dict) if state_dict is not None else ({}, None)
    encoder = build_encoder(params, encoder_state)
    decoder_config = {**params["decoder_config"], "hidden_size": encoder.token_dim,
                      "patch_size": params.get("decoder_patch_size", 16), "num_patches": encoder.num_tokens}
    decoder = build("decoder", "vit", general_decoder_params(decoder_config))
    if decoder_state is not None:
        load_decoder_weights(decoder, decoder_state, "RAE decoder")
    rae = RepresentationAutoencoder(encoder, decoder, AutoencoderConfig(
        noise_tau=params.get("noise_tau", 0.8), latent_eps=params.get("eps", 1e-5)))
    rae.set_statistics(*rae_statistics(params.get("stats")))
    return rae


def load_decoder_checkpoint(params: Mapping[str, Any], path: str | Path) -> Any:
    """The reference decoder file ``model.pt`` (flat GeneralDecoder state dict) as our ``vit`` decoder."""
    return load_general_decoder(params, read_tensor_file(path, "decoder checkpoint"))



# diffusers AutoencoderRAE: encoder built from a few sizes (head dim 64), decoder = GeneralDecoder with
# diffusers attention names and a regenerated (unsaved) sin-cos table, latents (z - mean) / (std + 1e-5) * sf.
DIFFUSERS_ENCODERS = {"dinov2": ("dinov2", {"image_size": 518}), "siglip2": ("siglip2", {"image_size": 256}),
                      "mae": ("mae", {"image_size": 224, "intermediate_size": 3072})}


def diffusers_encoder_params(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(our encoder name, params) for an ``AutoencoderRAE`` config (random weights)."""
    kind = config.get("encoder_type", "dinov2")
    if kind not in DIFFUSERS_ENCODERS:
        raise ConfigError(f"AutoencoderRAE: encoder_type {kind!r} is not one of {sorted(DIFFUSERS_ENCODERS)}")
    name, fixed = DIFFUSERS_ENCODERS[kind]
    hidden = config.get("encoder_hidden_size", 768)
    overrides = {**fixed, "hidden_size": hidden, "patch_size": config.get("encoder_patch_size", 14),
                 "num_hidden_layers": config.get("encoder_num_hidden_layers", 12), "num_attention_heads": hidden // 64}
    params = {"input_size": config.get("encoder_input_size", 224), "overrides": overrides, "pretrained": False,
              "image_mean": config.get("encoder_norm_mean") or [0.485, 0.456, 0.406],
              "image_std": config.get("encoder_norm_std") or [0.229, 0.224, 0.225]}
    return name, params


def diffusers_statistics(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
                         latent_shape: tuple[int, int, int], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' ``(z - mean) / (std + 1e-5) * scaling_factor`` as our ``(mean, var)`` with ``eps``."""
    def as_latent(value: Any, default: float) -> torch.Tensor:
        tensor = torch.as_tensor(default if value is None else value, dtype=torch.float32)
        if tensor.dim() == 1 and tensor.numel() == latent_shape[0]:
            tensor = tensor.view(-1, 1, 1)  # one value per channel
        return torch.broadcast_to(tensor, latent_shape)

    mean = as_latent(state_dict.get("_latents_mean", config.get("latents_mean")), 0.0)
    std = as_latent(state_dict.get("_latents_std", config.get("latents_std")), 1.0)
    scale = (std + 1e-5) / config.get("scaling_factor", 1.0)
    return mean, scale ** 2 - eps


def diffusers_pos_embed(shape: torch.Size) -> torch.Tensor:
    """The sin-cos table diffusers regenerates (it is not saved): positions scaled by ``16 / grid``.

    This equals the reference's table only for a 16 x 16 grid (the 256-px release).
    """
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    grid = math.isqrt(shape[1] - 1)
    table = get_2d_sincos_pos_embed(shape[2], grid, cls_token=True, extra_tokens=1, output_type="pt")
    return table.unsqueeze(0).float()


def load_diffusers_rae(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor] | None = None) -> Any:
    """Our RAE equivalent of a diffusers ``AutoencoderRAE`` (its ``config`` dict and state dict)."""
    from rae_framework import build
    from rae_framework.autoencoder import RepresentationAutoencoder
    from rae_framework.config import AutoencoderConfig

    if not config.get("reshape_to_2d", True):
        raise ConfigError("AutoencoderRAE: reshape_to_2d=False is not supported")
    name, params = diffusers_encoder_params(config)
    state = dict(state_dict or {})
    encoder_state = {k.partition(".")[2]: v for k, v in state.items() if k.startswith("encoder.")}
    with tempfile.TemporaryDirectory() as folder:
        if encoder_state:
            from safetensors.torch import save_file

            params = {**params, "pretrained": True, "weights": str(Path(folder) / "encoder.safetensors"),
                      "allow_download": False}
            save_file({k: v.contiguous() for k, v in encoder_state.items()}, params["weights"])
        encoder = build("encoder", name, params)
    decoder = build("decoder", "vit", general_decoder_params({
        "hidden_size": encoder.token_dim, "num_patches": encoder.num_tokens, "patch_size": config.get("patch_size", 16),
        "decoder_hidden_size": config.get("decoder_hidden_size", 512),
        "decoder_num_hidden_layers": config.get("decoder_num_hidden_layers", 8),
        "decoder_num_attention_heads": config.get("decoder_num_attention_heads", 16),
        "decoder_intermediate_size": config.get("decoder_intermediate_size", 2048),
        "num_channels": config.get("num_channels", 3)}))
    decoder_state = {k.partition(".")[2]: v for k, v in state.items() if k.startswith("decoder.")}
    if decoder_state:
        if "decoder_pos_embed" not in decoder_state:  # diffusers does not save it (computed only when absent)
            decoder_state["decoder_pos_embed"] = diffusers_pos_embed(decoder.pos_embed.shape)
        load_decoder_weights(decoder, decoder_state, "AutoencoderRAE decoder")
    autoencoder_config = AutoencoderConfig(noise_tau=config.get("noise_tau", 0.0))
    rae = RepresentationAutoencoder(encoder, decoder, autoencoder_config)
    rae.set_statistics(*diffusers_statistics(config, state, rae.latent_shape, autoencoder_config.latent_eps))
    return rae
