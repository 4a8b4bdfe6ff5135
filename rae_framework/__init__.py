"""rae-framework: Representation Autoencoders + Diffusion Transformers as typed, swappable components.

The top level imports neither torch nor any plugin; ``build``, ``load_assembly`` and ``load_run`` do so on
demand.
"""

from __future__ import annotations

from typing import Any

from rae_framework.config import ComponentConfig
from rae_framework.errors import (
    ConfigError,
    DuplicateComponentError,
    PluginLoadError,
    RAEError,
    UnknownComponentError,
)
from rae_framework.hookspecs import hookimpl
from rae_framework.session import Session, active_session

__version__ = "0.1.0"

PUBLIC_MODULES: tuple[str, ...] = (
    "rae_framework",  # build, load_assembly, hookimpl, Session, errors, ensure_torchvision_importable
    "rae_framework.interfaces",  # what components and stages implement
    "rae_framework.conditioning",  # Conditioning: what a conditioner returns and a denoiser reads
    "rae_framework.config",  # ComponentConfig, AutoencoderConfig, OptimizerConfig, LatentShape, latent_shape_of
    "rae_framework.errors",
    "rae_framework.stage",  # StageSpec, StageConfig, StageProblem: what a stage plugin declares
    "rae_framework.tracker",  # Tracker, TrackerRun, RunStatus: what a tracker plugin implements (torch-free)
    "rae_framework.engine",  # the stage toolkit (its package namespace only, not its submodules)
    "rae_framework.autoencoder",  # the RAE composition and its token/latent reshapes
    "rae_framework.data",  # datasets, batch plans, the latent cache and the data settings
    "rae_framework.data.config",
    "rae_framework.data.datasets",
    "rae_framework.data.latent_cache",
    "rae_framework.data.image_rows",  # images read by rows: npz, folders, datasets
    "rae_framework.data.npz_stream",  # .npz members read and written in batches
    "rae_framework.data.cache_plan",  # latent cache settings, size, disk check (torch-free)
    "rae_framework.data.loading",  # planned batches from DataLoader workers
    "rae_framework.data.sample_chunks",  # one uint8 file per global sample batch (resumable sampling), grid_rows
    "rae_framework.data.captions",  # captions of training rows (the seam for captioned datasets)
    "rae_framework.data.webdataset_index",  # tar shards of (image, caption): expansion, identity, index
    "rae_framework.data.webdataset_images",  # the shards' samples as a dataset
    "rae_framework.files",  # atomic writes
    "rae_framework.interop",
    "rae_framework.nn",  # tensor helpers shared by component families: unpatchify, sin-cos position table
    "rae_framework.testing",  # contract tests for plugin authors
)
"""The core modules a plugin may import; everything else is private to the core (a test enforces it)."""

__all__ = [
    "ComponentConfig",
    "ConfigError",
    "DuplicateComponentError",
    "PluginLoadError",
    "RAEError",
    "Session",
    "UnknownComponentError",
    "build",
    "ensure_torchvision_importable",
    "hookimpl",
    "load_assembly",
    "load_exported",
    "load_run",
]


def build(kind: str, name: str, params: dict[str, Any] | None = None, *, preset: str | None = None,
          session: Session | None = None) -> Any:
    """Build a ready component, e.g. ``build("denoiser", "dit-dh", preset="dit-dh-s")``: with ``session``, else
    the active one (a component building another), else a new one."""
    return (session or active_session() or Session()).build(kind, name, params, preset=preset)


def ensure_torchvision_importable() -> None:
    """Make torchvision importable beside a CPU-only torch (public for plugins that import timm, open_clip,
    lpips or transformers' vision models outside a build; builds apply it themselves)."""
    from rae_framework import compat

    compat.ensure_torchvision_importable()


def load_assembly(path: str, overrides: list[str] | None = None, *, session: Session | None = None) -> Any:
    """Read and validate an assembly YAML file (with optional ``key=value`` overrides)."""
    from rae_framework.assembly import load_assembly as _load

    return _load(path, overrides or [], session=session or Session())


def load_run(run_dir: str, device: Any = None, *, local_files_only: bool | None = None) -> Any:
    """A sampling/encoding pipeline over a finished run directory (its resolved assembly and EMA weights):
    ``pipe = load_run("runs/quickstart"); pipe([3, 7], num_images_per_label=4).images`` -> PIL images.
    ``run_dir`` may also be a folder ``rae export`` wrote or a Hub repo id holding one (``local_files_only``:
    read only the Hugging Face cache; default: ``HF_HUB_OFFLINE``). See :class:`rae_framework.pipeline.RAEPipeline`."""
    from rae_framework.pipeline import load_run as _load

    return _load(run_dir, device, local_files_only=local_files_only)


def load_exported(folder: str, device: Any = None, *, local_files_only: bool | None = None) -> Any:
    """The pipeline of :func:`load_run` over a folder that ``rae export`` wrote (vae/, transformer/,
    scheduler/) or a Hub repo id holding one: ``load_exported("exports/quickstart")([3, 7], seed=0).images``."""
    from rae_framework.interop.exported import load_exported as _load

    return _load(folder, device, local_files_only=local_files_only)
