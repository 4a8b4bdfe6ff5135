"""Find and read a diffusers ``AutoencoderRAE``: a local folder or a Hugging Face Hub repo id (its cache).

A model folder holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or its sharded form with a
``.safetensors.index.json``), as ``AutoencoderRAE.save_pretrained`` writes it. A pipeline folder or repo keeps
the autoencoder in ``vae/``: without ``subfolder`` that one is used when the top level holds no
``config.json``. A repo id is resolved by ``huggingface_hub.snapshot_download`` fetching only those files;
offline (``HF_HUB_OFFLINE=1`` or ``offline=True``) only the cache is read, and what it lacks is an error naming
the repo and the files, never a hang.

The config is read strictly: every field must be one this framework expresses (``EXPRESSED_FIELDS``), and
the weights must hold exactly the keys diffusers' own ``AutoencoderRAE`` of that config has (it is built on
the meta device to list them), so a file that does not fit is an error naming the missing and unexpected keys.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rae_framework.errors import ConfigError, RAEError
from rae_framework.files import read_tensor_file

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
INDEX_FILE = f"{WEIGHTS_FILE}.index.json"  # sharded weights: {"weight_map": {key: shard file}}
SHARDS = "diffusion_pytorch_model*.safetensors*"  # the single file, the index and its shards
DEFAULT_REVISION = "main"
PIPELINE_SUBFOLDER = "vae"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
CLASS_NAME = "AutoencoderRAE"

# AutoencoderRAE.__init__ fields (diffusers 0.42) that load_diffusers_rae turns into our encoder, decoder and
# statistics. use_encoder_loss only switches a training loss and changes neither encode nor decode.
EXPRESSED_FIELDS = frozenset({
    "encoder_type", "encoder_hidden_size", "encoder_patch_size", "encoder_num_hidden_layers",
    "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads", "decoder_intermediate_size",
    "patch_size", "encoder_input_size", "image_size", "num_channels", "encoder_norm_mean", "encoder_norm_std",
    "latents_mean", "latents_std", "noise_tau", "reshape_to_2d", "use_encoder_loss", "scaling_factor"})
# diffusers regenerates the decoder's sin-cos table (a non-persistent buffer) and ignores a saved one on load
IGNORED_KEYS = frozenset({"decoder.decoder_pos_embed"})


@dataclass(frozen=True)
class DiffusersSource:
    """A resolved ``AutoencoderRAE`` folder and how to name it in messages."""

    folder: Path  # holds config.json and the weights (or should: reading names what is missing)
    where: str  # "folder /x/vae" or "Hub repo org/name (subfolder vae, revision main)"
    commit: str | None = None  # the Hub snapshot's commit hash (the cache's snapshots/<commit>/)
    hint: str = ""  # how to get a missing file (the download command for a Hub repo)

    def file(self, name: str) -> Path:
        """``name`` inside the folder; a missing one is a ConfigError naming it, the folder and the source."""
        path = self.folder / name
        if not path.is_file():
            raise ConfigError(f"rae import: {name} is missing from {self.where} ({path}){self.hint}")
        return path


def hub_offline(offline: bool = False) -> bool:
    """Whether the Hub may not be contacted: ``offline`` or ``HF_HUB_OFFLINE`` set."""
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_source(source: str, *, subfolder: str | None = None, revision: str | None = None,
                   offline: bool = False) -> DiffusersSource:
    """A local folder when ``source`` exists, else a Hub repo id resolved through the cache (or a download)."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"rae import: {source} is a file; give the folder holding {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE} (or a Hub repo id)")
        folder = model_folder(path, subfolder)
        return DiffusersSource(folder, f"folder {folder}")
    if not HUB_ID.match(source):
        raise ConfigError(f"rae import: {source} is neither an existing folder nor a Hugging Face repo id "
                          "(owner/name)")
    return hub_source(source, subfolder, revision, hub_offline(offline))


def model_folder(root: Path, subfolder: str | None) -> Path:
    """``root/subfolder`` when named; else ``root``, or ``root/vae`` for a pipeline layout without a top config."""
    if subfolder:
        return root / subfolder
    if not (root / CONFIG_FILE).is_file() and (root / PIPELINE_SUBFOLDER / CONFIG_FILE).is_file():
        return root / PIPELINE_SUBFOLDER
    return root


def hub_patterns(subfolder: str | None) -> list[str]:
    """The files of the model to fetch from a repo (never a pipeline's other components)."""
    prefixes = [f"{subfolder.strip('/')}/"] if subfolder else ["", f"{PIPELINE_SUBFOLDER}/"]
    return [pattern for prefix in prefixes for pattern in (f"{prefix}{CONFIG_FILE}", f"{prefix}{SHARDS}")]


def hub_source(repo_id: str, subfolder: str | None, revision: str | None, offline: bool) -> DiffusersSource:
    """The cached (or, online, downloaded) snapshot of ``repo_id``; absent offline -> ConfigError naming it."""
    from huggingface_hub import snapshot_download

    details = [f"subfolder {subfolder}"] if subfolder else []
    described = f"Hub repo {repo_id} ({', '.join([*details, f'revision {revision or DEFAULT_REVISION}'])})"
    include = f" --include '{subfolder.strip('/')}/*'" if subfolder else ""
    hint = (f"; fetch it on a machine with network (`hf download {repo_id}{include}`) into the Hugging Face "
            "cache used here (HF_HUB_CACHE)")
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=hub_patterns(subfolder),
                                          local_files_only=offline))
    except Exception as error:  # noqa: BLE001 - hub errors differ across versions; each means "not available"
        reason = ("is not in the Hugging Face cache and the Hub is offline (HF_HUB_OFFLINE=1 or --offline)"
                  if offline else f"could not be downloaded ({type(error).__name__}: {error})")
        raise ConfigError(f"rae import: {described} {reason}{hint}") from None
    return DiffusersSource(model_folder(snapshot, subfolder), described, snapshot.name, hint)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; unreadable JSON, or JSON that is no object, is a ConfigError naming it."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"rae import: {path}: not a readable JSON file ({error})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"rae import: {path}: expected a JSON object, got {type(document).__name__}")
    return document


def read_config(source: DiffusersSource) -> dict[str, Any]:
    """``config.json`` as a dict; a field this framework cannot express is a ConfigError naming it."""
    path = source.file(CONFIG_FILE)
    config = read_json_object(path)
    if config.get("_class_name", CLASS_NAME) != CLASS_NAME:
        raise ConfigError(f"rae import: {path}: field '_class_name' is {config['_class_name']!r}; only a diffusers "
                          f"{CLASS_NAME} can be imported (for a pipeline, the folder holding vae/)")
    unknown = sorted(key for key in config if not key.startswith("_") and key not in EXPRESSED_FIELDS)
    if unknown:
        raise ConfigError(f"rae import: {path}: field(s) {unknown} cannot be expressed in this framework's "
                          f"components (known {CLASS_NAME} fields: {sorted(EXPRESSED_FIELDS)})")
    return {key: value for key, value in config.items() if not key.startswith("_")}


def read_state_dict(source: DiffusersSource) -> dict[str, Any]:
    """The weights: one safetensors file, or the shards an index names (each must be present and readable)."""
    if not (source.folder / WEIGHTS_FILE).is_file() and (source.folder / INDEX_FILE).is_file():
        weight_map = read_json_object(source.file(INDEX_FILE)).get("weight_map", {})
        state: dict[str, Any] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(read_tensor_file(source.file(shard), "rae import: weights shard"))
        return state
    return read_tensor_file(source.file(WEIGHTS_FILE), "rae import: weights file")


def expected_keys(config: Mapping[str, Any], where: str) -> set[str]:
    """The state-dict keys of diffusers' ``AutoencoderRAE(**config)`` (built on the meta device: no memory)."""
    import torch

    from rae_framework import compat

    compat.ensure_torchvision_importable()
    from diffusers import AutoencoderRAE

    try:
        with torch.device("meta"):
            model = AutoencoderRAE(**config)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"rae import: {where}: {CLASS_NAME} rejects this config: {error}") from None
    except Exception as error:  # noqa: BLE001 - e.g. diffusers 0.42's siglip2 branch under transformers 5
        import diffusers
        import transformers

        raise RAEError(f"rae import: {where}: diffusers {diffusers.__version__} cannot build {CLASS_NAME}("
                       f"encoder_type={config.get('encoder_type', 'dinov2')!r}) with transformers "
                       f"{transformers.__version__} ({type(error).__name__}: {error})") from None
    return set(model.state_dict())


def check_state_keys(config: Mapping[str, Any], state: Mapping[str, Any], where: str) -> None:
    """The weights hold exactly diffusers' keys for ``config``; else a ConfigError naming the difference."""
    expected = expected_keys(config, where)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected - IGNORED_KEYS)
    if missing or unexpected:
        parts = [f"{label} {keys[:10]}{f' (+{len(keys) - 10} more)' if len(keys) > 10 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ConfigError(f"rae import: the weights of {where} do not fit its {CONFIG_FILE}: {'; '.join(parts)}")
