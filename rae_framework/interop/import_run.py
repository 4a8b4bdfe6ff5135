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
from rae_framework.files import atomic_write_text, read_tensor_file

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


def loaded_roles(assembly: Any, files: OfficialFiles) -> dict[str, Any]:
    """Each role of ``files`` built from ``assembly`` with its reference weights loaded; nothing is written, so
    a file that does not fit its role stops the import before the run directory is touched."""
    loaded = {}
    for role, source in files.roles().items():
        loaded[role] = assembly.build(role)
        load_role_weights(role, loaded[role], read_tensor_file(source, f"{role} file"), str(source))
    return loaded


def write_weights(loaded: Mapping[str, Any], checkpoints: Path) -> dict[str, Path]:
    """``checkpoints/<role>_ema.safetensors`` for each loaded role; role -> the file written."""
    from rae_framework.engine.checkpoints import module_tensors, save_weights

    written = {role: checkpoints / f"{role}_ema.safetensors" for role in loaded}
    for role, component in loaded.items():
        save_weights(written[role], module_tensors(component))
    return written


def import_official_run(assembly_path: str | Path, files: OfficialFiles, out_dir: str | Path,
                        overrides: Sequence[str] = ()) -> Path:
    """Write the reference's weights into ``out_dir/checkpoints/`` and ``out_dir/imported.yaml``, the assembly
    with each imported role's ``checkpoint`` (and ``autoencoder.statistics``) pointing at them; returns it."""
    from rae_framework.assembly import load_assembly
    from rae_framework.engine.run_lock import hold_run_lock
    from rae_framework.engine.statistics import load_statistics, save_statistics

    if not files.roles() and files.stats is None:
        raise ConfigError("import-official: name at least one file (--decoder, --stats, --denoiser, --guide)")
    roles = files.roles()
    unbound = [f"components.{role}.checkpoint=null" for role in roles]  # build fresh, then load the import
    assembly = load_assembly(assembly_path, [*overrides, *unbound])
    loaded = loaded_roles(assembly, files)
    statistics = load_statistics(files.stats) if files.stats is not None else None  # (mean, var)
    checkpoints = Path(out_dir) / "checkpoints"
    with hold_run_lock(out_dir):  # a writer of the run directory, as `rae run` is
        checkpoints.mkdir(parents=True, exist_ok=True)
        bound = [f"components.{role}.checkpoint={path}" for role, path in write_weights(loaded, checkpoints).items()]
        if statistics is not None:
            # only the entries stat.pt holds: the released DINOv2-B file has ``var`` alone (mean 0 for the RAE)
            save_statistics(checkpoints / STATISTICS_FILE, *statistics)
            bound.append(f"autoencoder.statistics={checkpoints / STATISTICS_FILE}")
        imported = load_assembly(assembly_path, [*overrides, *bound])  # validated again, now with the files
        path = atomic_write_text(Path(out_dir) / IMPORTED_ASSEMBLY, imported.to_yaml())
    return path
