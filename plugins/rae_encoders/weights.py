"""Weight sources for the encoders: a local directory or file, the Hugging Face cache, or a hub id.

Offline (``HF_HUB_OFFLINE=1`` or ``allow_download: false``) only local files and the cache are used, and a
missing model is a :class:`WeightsNotFoundError` naming what to download, raised at once (no retries).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rae_framework.errors import ConfigError, WeightsNotFoundError
from rae_encoders.configs import HFEncoderConfig

HF_PATTERNS = ["*.json", "*.safetensors", "pytorch_model.bin"]


def hub_offline(allow_download: bool = True) -> bool:
    """Whether hub access must stay local: not allowed, or ``HF_HUB_OFFLINE`` set."""
    return not allow_download or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def hub_snapshot(repo_id: str, *, allow_download: bool = True, patterns: list[str] | None = None) -> Path:
    """Local folder of ``repo_id`` from the HF cache, downloading it only when allowed."""
    from huggingface_hub import snapshot_download

    offline = hub_offline(allow_download)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns or HF_PATTERNS, local_files_only=offline))
    except Exception as error:  # hub errors differ across versions; all mean "not available here"
        how = "offline (HF_HUB_OFFLINE=1 or allow_download: false)" if offline else f"download failed: {error}"
        raise WeightsNotFoundError(
            f"weights '{repo_id}' are not in the Hugging Face cache and {how}. Fetch them with "
            f"`hf download {repo_id}` (or `huggingface-cli download {repo_id}`) on a machine with network, or "
            f"set the encoder's 'weights' to a local directory or .safetensors file") from None


def resolve_source(weights: str | None, default_hub_id: str, allow_download: bool) -> Path:
    """An existing local path: ``weights`` itself when it is one, else the hub snapshot of the repo id."""
    source = weights or default_hub_id
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.startswith((".", "/", "~")) or source.endswith((".safetensors", ".pt", ".bin")):
        raise WeightsNotFoundError(f"weights file or folder '{source}' does not exist")
    return hub_snapshot(source, allow_download=allow_download)


def hf_config(config_class: type, config: HFEncoderConfig, base: dict[str, Any] | None = None) -> Any:
    """An HF config object of ``config_class``; unknown keys in ``overrides`` are a :class:`ConfigError`."""
    known = set(inspect.signature(config_class.__init__).parameters) | set(config_class().to_dict())
    unknown = sorted(set(config.overrides) - known)
    if unknown:
        raise ConfigError(f"unknown {config_class.__name__} fields in overrides: {unknown}")
    values = {**(base or config.architecture()), **config.overrides, **config.RUNTIME}
    hf = config_class(**values)
    hf._attn_implementation = config.attn_implementation
    return hf


def _check_loading(info: dict[str, Any], ignored: str, source: Any) -> None:
    """Strict loading: everything but the keys matching ``ignored`` must match."""
    problems = {kind: [k for k in info.get(kind, []) if not re.search(ignored, k if isinstance(k, str) else k[0])]
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        raise ConfigError(f"weights from {source} do not fit the architecture: "
                          + "; ".join(f"{kind}: {keys[:8]}" for kind, keys in problems.items() if keys))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report while loading (we check the keys ourselves, strictly)."""
    from transformers.utils import logging as hf_logging

    previous, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def from_folder(model_class: type, folder: Path, hf: Any, ignored: str) -> Any:
    """``model_class.from_pretrained(folder)`` with config ``hf``, loaded strictly up to ``ignored`` keys."""
    with quiet_transformers():
        model, info = model_class.from_pretrained(folder, config=hf, output_loading_info=True,
                                                  local_files_only=True, dtype=torch.float32)
    _check_loading(info, ignored, folder)
    return model


def from_state_dict(model_class: type, hf: Any, state_dict: dict[str, torch.Tensor], ignored: str) -> Any:
    """Build with config ``hf`` and load a state dict of any transformers version's key names.

    The state dict goes through ``from_pretrained`` so that transformers applies its own key conversions
    (e.g. 4.x ``attention.attention.query`` -> 5.x ``attention.q_proj``).
    """
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(Path(folder) / "model.safetensors"))
        return from_folder(model_class, Path(folder), hf, ignored)


def build_hf_model(model_class: type, config_class: type, config: HFEncoderConfig, ignored: str) -> Any:
    """Random weights (``pretrained: false``) or the pretrained weights of the configured source."""
    if not config.pretrained:
        return model_class(hf_config(config_class, config))
    source = resolve_source(config.weights, config.default_hub_id(), config.allow_download)
    if source.is_file():
        from safetensors.torch import load_file

        return from_state_dict(model_class, hf_config(config_class, config), load_file(str(source)), ignored)
    pretrained = config_class.from_pretrained(source, local_files_only=True).to_dict()
    return from_folder(model_class, source, hf_config(config_class, config, base=pretrained), ignored)
