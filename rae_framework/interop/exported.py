"""The folder ``rae export`` writes, and :func:`load_exported`, which reads it back as a :class:`RAEPipeline`.

Layout (diffusers-style sub-folders, so that the Hub shows it and diffusers reads the autoencoder)::

    vae/config.json, vae/diffusion_pytorch_model.safetensors   diffusers AutoencoderRAE (latent statistics in
                                                               latents_mean / latents_std)
    vae/rae_framework.safetensors                              the exact statistics and decoder position table
    transformer/config.json                                    {"kind": "denoiser", "name", "params"}: our
    transformer/diffusion_pytorch_model.safetensors            denoiser (the run's EMA weights)
    guide/config.json, guide/diffusion_pytorch_model.safetensors   the autoguidance guide denoiser (when the run
                                                               has one), as transformer/
    scheduler/scheduler_config.json                            schedule, sampler and guidance (name + params each),
                                                               the run's name and seed
    classes.json, metrics.json, samples/grid.png, README.md    class names, the run's metrics, the model card

Every component is rebuilt through the registry from its name and resolved params, so the loaded pipeline
samples exactly what ``load_run`` samples over the run directory for the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rae_framework.errors import ConfigError

VAE_DIR, TRANSFORMER_DIR, SCHEDULER_DIR, GUIDE_DIR = "vae", "transformer", "scheduler", "guide"
CONFIG_FILE, SCHEDULER_FILE = "config.json", "scheduler_config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
SAMPLING_ROLES = ("schedule", "sampler", "guidance")


def transformer_config(path: Path) -> Path:
    """``transformer/config.json`` of an exported folder."""
    return path / TRANSFORMER_DIR / CONFIG_FILE


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is a folder that ``rae export`` wrote (it has ``transformer/config.json`` and ``vae/``)."""
    path = Path(path)
    return transformer_config(path).is_file() and (path / VAE_DIR / CONFIG_FILE).is_file()


def read_json(path: Path) -> Any:
    """A JSON file of an exported folder; missing or broken is a ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing; 'rae export RUN_DIR --format diffusers OUT_DIR' writes it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON file ({error})") from None


def component_entry(data: Any, where: str) -> dict[str, Any]:
    """``{"name", "params"}`` of one exported component, checked."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("params"), dict):
        raise ConfigError(f"{where}: expected {{'name': ..., 'params': {{...}}}}, got {data!r}")
    return data


def exported_assembly(folder: Path, rae: Any, session: Any) -> Any:
    """The in-memory :class:`Assembly` of an exported folder: the components it rebuilds (names and params),
    the run's name and seed, the autoencoder settings; no stages and no data (nothing trains from it)."""
    from rae_framework.assembly import Assembly, ComponentSpec
    from rae_framework.data.config import DataConfig
    from rae_framework.interop.official_rae import DIFFUSERS_ENCODERS

    scheduler = read_json(folder / SCHEDULER_DIR / SCHEDULER_FILE)
    encoder_name = DIFFUSERS_ENCODERS[read_json(folder / VAE_DIR / CONFIG_FILE)["encoder_type"]][0]
    entries = {"encoder": _stage1_entry(rae.encoder, encoder_name), "decoder": _stage1_entry(rae.decoder, "vit"),
               "denoiser": _denoiser_entry(folder / TRANSFORMER_DIR)}
    if (folder / GUIDE_DIR).is_dir():
        entries["guide"] = _denoiser_entry(folder / GUIDE_DIR)
    for role in SAMPLING_ROLES:
        if scheduler.get(role) is not None:
            entries[role] = component_entry(scheduler[role], f"{folder / SCHEDULER_DIR / SCHEDULER_FILE}: {role}")
    components = {role: _spec(session, role, entry, ComponentSpec) for role, entry in entries.items()}
    run = scheduler.get("run", {})
    assembly = Assembly(name=run.get("name", "exported"), seed=run.get("seed", 0), components=components,
                        autoencoder=rae.config, data=DataConfig(image_size=run.get("image_size", 32)),
                        source=str(folder))
    assembly._session = session
    return assembly


def _denoiser_entry(folder: Path) -> dict[str, Any]:
    """The denoiser of ``transformer/`` (or ``guide/``): name, params and its weights as the checkpoint."""
    entry = component_entry(read_json(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
    return {**entry, "kind": "denoiser", "checkpoint": str(folder / WEIGHTS_FILE)}


def _stage1_entry(module: Any, name: str) -> dict[str, Any]:
    """Name and params of the encoder or decoder that :func:`load_exported_rae` built (weights: the vae file)."""
    params = module.config.model_dump(mode="json")
    if "weights" in params:
        params.update(weights=None, pretrained=False, allow_download=False)  # loaded from vae/, not from here
    return {"name": name, "params": params}


def _spec(session: Any, role: str, entry: dict[str, Any], spec_class: type) -> Any:
    kind = entry.get("kind", role)
    config = session.make_config(kind, entry["name"], entry["params"])
    return spec_class(kind=kind, name=entry["name"], params=config.model_dump(mode="json"),
                      checkpoint=entry.get("checkpoint"), config=config)


def load_exported(folder: str | Path, device: Any = None, *, local_files_only: bool | None = None) -> Any:
    """The :class:`~rae_framework.pipeline.RAEPipeline` over an exported folder (see the module docstring) or a
    Hub repo id holding one (:func:`rae_framework.interop.hub.snapshot`; ``local_files_only`` defaults to
    ``HF_HUB_OFFLINE``), on ``device`` (default: CUDA when available, else CPU)."""
    from rae_framework.engine import DistContext, RunState
    from rae_framework.interop.diffusers_export import load_exported_rae
    from rae_framework.interop.hub import is_hub_candidate, snapshot
    from rae_framework.pipeline import RAEPipeline, device_of, run_class_names
    from rae_framework.session import Session

    folder = snapshot(str(folder), local_files_only) if is_hub_candidate(folder) else Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such exported folder (one written by 'rae export')")
    rae = load_exported_rae(folder / VAE_DIR)
    assembly = exported_assembly(folder, rae, Session())
    state = RunState(folder, assembly, DistContext(device=device_of(device)))
    denoiser = state.component("denoiser").to(state.context.device).eval()
    sources = {"encoder": f"{VAE_DIR}/{WEIGHTS_FILE} (exported)", "decoder": f"{VAE_DIR}/{WEIGHTS_FILE} (exported)",
               "denoiser": f"{TRANSFORMER_DIR}/{WEIGHTS_FILE} (exported EMA)",
               "statistics": f"{VAE_DIR}/rae_framework.safetensors (exported)"}
    if "guide" in assembly.components:
        sources["guide"] = f"{GUIDE_DIR}/{WEIGHTS_FILE} (exported)"
    names = run_class_names(folder, assembly.data) if (folder / "classes.json").is_file() else None
    return RAEPipeline(state, rae.to(state.context.device), denoiser, names, sources)
