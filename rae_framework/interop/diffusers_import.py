"""``rae import``: a published diffusers ``AutoencoderRAE`` -> a run directory that trains stage 2 on it.

Stage 1 of the paper (the decoder, the latent statistics) is what an ``AutoencoderRAE`` publishes, so the import
makes it this framework's: ``checkpoints/encoder.safetensors`` and ``checkpoints/decoder_ema.safetensors`` in our
key layout, ``checkpoints/latent_stats.safetensors`` from diffusers' latent normalisation, and ``imported.yaml``,
an assembly whose ``encoder`` and ``decoder`` components name those files (``checkpoint``) and whose
``autoencoder.statistics`` names the statistics. Its stages are stage 2 only (``train_decoder`` and
``latent_stats`` are removed: the decoder and the statistics are the imported ones), so::

    rae import org/name --subfolder vae --out runs/mine --assembly my-stage2.yaml
    rae run runs/mine/imported.yaml --out runs/mine

trains the denoiser on the published autoencoder's latents and samples with its decoder. Without
``--assembly`` the stage-2 part is a template (the paper's DiT^DH-S on the imported latents, logit-normal
times with the dimension-dependent shift, Euler with 50 points) that needs ``--set data.root=DIR``.

diffusers normalises latents as ``(z - latents_mean) / (latents_std + 1e-5) * scaling_factor``; ours is
``(z - mean) / sqrt(var + eps)``; the statistics are converted so that both give the same latents
(``official_rae.diffusers_statistics``), so a denoiser trained here samples latents diffusers decodes alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rae_framework.errors import ConfigError
from rae_framework.files import atomic_write_text
from rae_framework.interop.diffusers_source import (CONFIG_FILE, IGNORED_KEYS, DiffusersSource, check_state_keys,
                                                    read_config, read_state_dict, resolve_source)
from rae_framework.interop.import_run import IMPORTED_ASSEMBLY, STATISTICS_FILE

ENCODER_FILE = "encoder.safetensors"
DECODER_FILE = "decoder_ema.safetensors"
PROVENANCE_FILE = "imported_from.json"
STAGE_ONE = ("train_decoder", "latent_stats")  # what the import replaces
IMPORTED = "rae import"  # where the imported paths of the assembly come from, in its error messages


def stage2_template(name: str, image_size: int) -> dict[str, Any]:
    """The stage-2 assembly used without ``--assembly``: the paper's DiT^DH-S recipe on the imported latents
    (examples/recipes/imagenet256-dit-dh-s.yaml; the denoiser's in_channels/input_size and the shift follow
    from the imported encoder). ``data.root`` is the user's to set."""
    return {"name": name, "seed": 0,
            "components": {"denoiser": {"name": "dit-dh", "preset": "dit-dh-s"},
                           "schedule": {"name": "shifted-flow", "preset": "shifted-flow-logit-normal"},
                           "sampler": {"name": "euler", "preset": "euler-50"}},
            "autoencoder": {"noise_tau": 0.0},
            "data": {"source": "folder", "root": None, "image_size": image_size},
            "stages": {"train_denoiser": {}, "sample": {}}}


def run_name(source: str) -> str:
    """An assembly name from a repo id or folder (``org/RAE-DINOv2`` -> ``rae-dinov2``; a ``vae`` folder
    is named by its parent)."""
    path = Path(source.rstrip("/"))
    stem = path.parent.name if path.name == "vae" and path.parent.name else path.name
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return name or "imported-rae"


def diffusers_image_normalisation(state: Mapping[str, Any]) -> dict[str, list[float]]:
    """``encoder_norm_mean/std`` from the saved ``encoder_mean/std`` buffers (diffusers loads those, not the
    config's lists); empty when the file has none."""
    fields = {"encoder_norm_mean": "encoder_mean", "encoder_norm_std": "encoder_std"}
    return {field: [float(v) for v in state[key].flatten()] for field, key in fields.items() if key in state}


def imported_autoencoder(config: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
    """Our RAE with the weights of the ``AutoencoderRAE`` (config + state dict); it encodes and decodes as
    diffusers' does."""
    from rae_framework.interop.official_rae import load_diffusers_rae

    weights = {key: value for key, value in state.items() if key not in IGNORED_KEYS}
    return load_diffusers_rae({**config, **diffusers_image_normalisation(state)}, weights)


def component_specs(config: Mapping[str, Any], state: Mapping[str, Any], rae: Any,
                    checkpoints: Path | None) -> dict[str, dict[str, Any]]:
    """The ``encoder`` and ``decoder`` entries of the assembly (params that rebuild ``rae``'s architecture;
    ``checkpoint`` in ``checkpoints`` or none). The decoder's token_dim/num_patches are derived, so left out."""
    from rae_framework.interop.official_rae import diffusers_encoder_params

    name, encoder_params = diffusers_encoder_params({**config, **diffusers_image_normalisation(state)})
    decoder_params = {key: value for key, value in rae.decoder.config.model_dump(mode="json").items()
                      if key not in ("token_dim", "num_patches")}
    files = {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}
    specs = {"encoder": {"name": name, "params": encoder_params}, "decoder": {"name": "vit", "params": decoder_params}}
    for role, spec in specs.items():
        spec["checkpoint"] = str(checkpoints / files[role]) if checkpoints is not None else None
    return specs


def base_document(assembly: str | Path | None, name: str, image_size: int) -> tuple[dict[str, Any], Any]:
    """The stage-2 document (the user's assembly file, or the template) and its source map."""
    from rae_framework.yaml_lines import SourceMap, load_yaml_file

    if assembly is None:
        return stage2_template(name, image_size), SourceMap(f"{IMPORTED} template")
    data, source_map = load_yaml_file(assembly)
    if not isinstance(data, dict):
        raise ConfigError(f"{assembly}: an assembly is a mapping with 'name', 'components', 'stages', ...")
    return data, source_map


def imported_document(base: dict[str, Any], source_map: Any, specs: Mapping[str, Any], statistics: Path | None,
                      overrides: Sequence[str]) -> dict[str, Any]:
    """``base`` with the imported encoder/decoder and statistics, without stage 1, then the ``--set`` overrides."""
    from rae_framework.yaml_lines import apply_override, parse_override

    others = {role: spec for role, spec in (base.get("components") or {}).items() if role not in specs}
    autoencoder = {**(base.get("autoencoder") or {}), "statistics": str(statistics) if statistics else None}
    document = {**base, "components": {**specs, **others}, "autoencoder": autoencoder,
                "stages": {key: value for key, value in (base.get("stages") or {}).items() if key not in STAGE_ONE}}
    for role in specs:
        source_map.overrides[("components", role)] = IMPORTED
    source_map.overrides[("autoencoder", "statistics")] = IMPORTED
    for override in overrides:
        key, value = parse_override(override)
        document = apply_override(document, key, value)
        source_map.overrides[key] = f"--set {override}"
    return document


def validated(document: dict[str, Any], source_map: Any, origin: str) -> Any:
    """The validated assembly of ``document`` (every problem at once, as ``rae validate`` reports them)."""
    import copy

    from rae_framework.assembly import validate_assembly
    from rae_framework.session import Session

    return validate_assembly(copy.deepcopy(document), copy.deepcopy(source_map), session=Session(), source=origin)


def write_checkpoints(rae: Any, config: Mapping[str, Any], state: Mapping[str, Any], checkpoints: Path,
                      latent_eps: float) -> Path:
    """Our encoder and decoder weights and the converted statistics into ``checkpoints/``; returns the
    statistics file."""
    from rae_framework.engine.checkpoints import module_tensors, save_weights
    from rae_framework.engine.statistics import save_statistics
    from rae_framework.interop.official_rae import diffusers_statistics

    checkpoints.mkdir(parents=True, exist_ok=True)
    save_weights(checkpoints / ENCODER_FILE, module_tensors(rae.encoder))
    save_weights(checkpoints / DECODER_FILE, module_tensors(rae.decoder))
    statistics = checkpoints / STATISTICS_FILE
    save_statistics(statistics, *diffusers_statistics(config, state, rae.latent_shape, latent_eps))
    return statistics


def write_provenance(out_dir: Path, source: str, resolved: DiffusersSource) -> None:
    """``imported_from.json``: what was imported (the source as given, what it resolved to: the folder and, for
    a Hub repo, the snapshot's commit; its config)."""
    record = {"source": source, "resolved": resolved.where, "folder": str(resolved.folder), "commit": resolved.commit,
              "config": json.loads((resolved.folder / CONFIG_FILE).read_text(encoding="utf-8"))}
    atomic_write_text(out_dir / PROVENANCE_FILE, json.dumps(record, indent=2, default=str))


def import_diffusers_run(source: str, out_dir: str | Path, *, assembly: str | Path | None = None,
                         subfolder: str | None = None, revision: str | None = None, offline: bool = False,
                         overrides: Sequence[str] = ()) -> Path:
    """Import the ``AutoencoderRAE`` at ``source`` (folder or Hub repo id) into ``out_dir``; returns
    ``out_dir/imported.yaml`` (see the module docstring). The stage-2 assembly is validated before any file
    is written, and again with the written files."""
    out_dir = Path(out_dir)
    resolved = resolve_source(source, subfolder=subfolder, revision=revision, offline=offline)
    config, state = read_config(resolved), read_state_dict(resolved)
    check_state_keys(config, state, resolved.where)
    rae = imported_autoencoder(config, state)
    base, source_map = base_document(assembly, run_name(source if subfolder is None else f"{source}/{subfolder}"),
                                     rae.decoder.config.image_size)
    origin = str(assembly) if assembly is not None else f"{IMPORTED} {source}"
    unbound = validated(imported_document(base, source_map, component_specs(config, state, rae, None), None,
                                          overrides), source_map, origin)
    checkpoints = out_dir / "checkpoints"
    statistics = write_checkpoints(rae, config, state, checkpoints, unbound.autoencoder.latent_eps)
    document = imported_document(base, source_map, component_specs(config, state, rae, checkpoints), statistics,
                                 overrides)
    imported = validated(document, source_map, origin)
    write_provenance(out_dir, source, resolved)
    path = out_dir / IMPORTED_ASSEMBLY
    atomic_write_text(path, imported.to_yaml())
    return path
