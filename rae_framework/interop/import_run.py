"""Import the reference implementation's released checkpoints into a run directory of this framework.

The paper's weights (bytetriper/RAE: the decoder ``model.pt``, the latent statistics ``stat.pt`` and the DiT
checkpoints ``stage2_model.pt``) become ``checkpoints/*.safetensors`` in our key layout, next to an assembly
``imported.yaml`` that names them, so that the paper's models can be sampled and evaluated with this pipeline
before anything is trained::

    python -m rae_framework import-official examples/recipes/imagenet256-sample-autoguidance.yaml \\
        --decoder models/decoders/dinov2/wReg_base/ViTXL_n08/model.pt \\
        --stats models/stats/dinov2/wReg_base/imagenet1k/stat.pt \\
        --denoiser models/DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt \\
        --guide models/DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt --out runs/paper256
    python -m rae_framework run runs/paper256/imported.yaml --out runs/paper256

The architectures come from the assembly (its resolved, derived params), the weights from the files: every
file is loaded strictly (``weights_only``), so a file that does not fit its role is an error naming the
missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rae_framework.errors import ConfigError

IMPORTED_ASSEMBLY = "imported.yaml"
STATISTICS_FILE = "latent_stats.safetensors"


@dataclass(frozen=True)
class OfficialFiles:
    """The reference's files to import, each optional; a role's file replaces the assembly's ``checkpoint``."""

    decoder: Path | None = None  # model.pt (flat GeneralDecoder) or a stage-1 training checkpoint (ema/model)
    stats: Path | None = None  # stat.pt: {"mean"?, "var"?} per (C, h, w)
    denoiser: Path | None = None  # stage2_model.pt or a stage-2 training checkpoint (its "ema")
    guide: Path | None = None  # the autoguidance guide, as the denoiser

    def roles(self) -> dict[str, Path]:
        """Component role -> file, for the files given (statistics excluded)."""
        return {item.name: getattr(self, item.name) for item in fields(self)
                if item.name != "stats" and getattr(self, item.name) is not None}


def read_reference_file(path: Path) -> Mapping[str, Any]:
    """A reference ``.pt`` file (``torch.load(weights_only=True)``: no pickled code runs)."""
    import torch

    if not path.is_file():
        raise ConfigError(f"reference file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
    return data


def decoder_state_dict(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The GeneralDecoder weights of a released ``model.pt`` or of a stage-1 checkpoint's ``ema`` RAE dict."""
    from rae_framework.interop.official_dit import checkpoint_state_dict
    from rae_framework.interop.official_rae import split_rae_state_dict

    weights = checkpoint_state_dict(data)
    if any(key.startswith(("encoder.", "decoder.")) for key in weights):
        return split_rae_state_dict(weights)[1]
    return weights


def load_role_weights(role: str, component: Any, data: Mapping[str, Any], source: str) -> None:
    """Load reference weights into our built ``component`` of ``role`` (strict, converted keys)."""
    from rae_framework.interop.official_dit import check_state_dict, checkpoint_state_dict, strip_wrapper_prefixes
    from rae_framework.interop.official_rae import load_decoder_weights

    if role == "decoder":
        load_decoder_weights(component, decoder_state_dict(data), source)
        return
    weights = strip_wrapper_prefixes(checkpoint_state_dict(data))  # DiT keys are the reference's own
    check_state_dict(component, weights, source)
    component.load_state_dict(weights, strict=True)


def import_weights(assembly: Any, files: OfficialFiles, checkpoints: Path) -> dict[str, Path]:
    """Build each role of ``files`` from ``assembly``, load its reference file, write ``<role>_ema.safetensors``."""
    from rae_framework.engine.checkpoints import module_tensors, save_weights

    written = {}
    for role, source in files.roles().items():
        component = assembly.build(role)
        load_role_weights(role, component, read_reference_file(source), str(source))
        written[role] = checkpoints / f"{role}_ema.safetensors"
        save_weights(written[role], module_tensors(component))
    return written


def import_statistics(source: Path, checkpoints: Path) -> Path:
    """``stat.pt`` -> ``latent_stats.safetensors`` (only the entries it holds: the released DINOv2-B file has
    ``var`` alone, which the RAE reads as mean 0)."""
    from rae_framework.engine.statistics import load_statistics, save_statistics

    mean, var = load_statistics(source)
    path = checkpoints / STATISTICS_FILE
    save_statistics(path, mean, var)
    return path


def import_official_run(assembly_path: str | Path, files: OfficialFiles, out_dir: str | Path,
                        overrides: Sequence[str] = ()) -> Path:
    """Write the reference's weights into ``out_dir/checkpoints/`` and ``out_dir/imported.yaml``, the assembly
    with each imported role's ``checkpoint`` (and ``autoencoder.statistics``) pointing at them; returns it."""
    from rae_framework.assembly import load_assembly
    from rae_framework.engine.run_lock import hold_run_lock

    if not files.roles() and files.stats is None:
        raise ConfigError("import-official: name at least one file (--decoder, --stats, --denoiser, --guide)")
    roles = files.roles()
    unbound = [f"components.{role}.checkpoint=null" for role in roles]  # build fresh, then load the import
    assembly = load_assembly(assembly_path, [*overrides, *unbound])
    checkpoints = Path(out_dir) / "checkpoints"
    with hold_run_lock(out_dir):  # a writer of the run directory, as `rae run` is
        checkpoints.mkdir(parents=True, exist_ok=True)
        bound = [f"components.{role}.checkpoint={path}" for role, path in import_weights(assembly, files,
                                                                                        checkpoints).items()]
        if files.stats is not None:
            bound.append(f"autoencoder.statistics={import_statistics(files.stats, checkpoints)}")
        imported = load_assembly(assembly_path, [*overrides, *bound])  # validated again, now with the files
        path = Path(out_dir) / IMPORTED_ASSEMBLY
        path.write_text(imported.to_yaml(), encoding="utf-8")
    return path
