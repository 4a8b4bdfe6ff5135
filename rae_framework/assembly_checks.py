"""Cross-component checks of an assembly: what a run would hit hours later, reported before anything runs.

Each check reads resolved components (their validated Configs), the ``data`` settings and, where a stage
matters, that stage's settings as ``getattr(stages, NAME, None)``, and reports through an issue collector
(``add`` for errors, ``warn`` for advice). A component takes part through the fields and class attributes of
its Config, never through its name:

* a guidance Config with ``needs_guide = True`` needs a ``guide`` role; one with ``needs_null_label = True``
  (classifier-free guidance) evaluates the null label, which a denoiser has only when its
  ``class_dropout_prob`` is above 0;
* a decoder Config's ``image_size`` must be ``data.image_size`` when a stage compares reconstructions with
  the data (train_decoder, evaluate); a trained denoiser's ``num_classes`` must be the dataset's;
* a ``checkpoint``, a local ``weights`` path, ``data.root`` and ``autoencoder.statistics`` should exist. A
  missing path is a warning, not an error: a recipe may be validated before the runs that write its
  inputs, or on another machine than the one it runs on.

Torch-free: nothing here imports a component's class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the settings models are only read here, whichever module owns them
    from rae_framework.config import AutoencoderConfig
    from rae_framework.data.config import DataConfig

DIGITS_CLASSES = 10
RECONSTRUCTING_STAGES = ("train_decoder", "evaluate")  # compare decoded images with the data's
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".pkl", ".json")


class Issues(Protocol):
    """Where the checks report (the assembly's collector, which locates each path in the file)."""

    def add(self, path: tuple[str, ...], message: str, value: Any = None, *, show_value: bool = True) -> None:
        """An error."""

    def warn(self, path: tuple[str, ...], message: str) -> None:
        """A warning."""


def check_all(components: dict[str, Any], data: DataConfig, autoencoder: AutoencoderConfig, stages: Any,
              issues: Issues) -> None:
    """Every cross-component check (``components``: role -> resolved spec with ``.config``); the data checks
    only where an enabled stage depends on them."""
    check_guidance(components, issues)
    train_denoiser = getattr(stages, "train_denoiser", None)
    check_label_dropout(components, train_denoiser, issues)
    if any(_enabled(getattr(stages, stage, None)) for stage in RECONSTRUCTING_STAGES):
        check_image_size(components, data, issues)
    if _enabled(train_denoiser):  # it learns the data's labels
        check_num_classes(components, data, issues)
    check_shard_prompts(data, getattr(stages, "sample", None), issues)
    check_paths(components, data, autoencoder, issues)


def check_shard_prompts(data: DataConfig, sample: Any, issues: Issues) -> None:
    """Shards carry captions but no classes, so sampling from a webdataset run needs its prompts."""
    if data.source == "webdataset" and _enabled(sample) and getattr(sample, "prompts", None) is None:
        issues.add(("stages", "sample", "prompts"), "data.source 'webdataset' has no classes to caption: give the "
                   "prompts to sample (a list of strings)", show_value=False)


def _enabled(settings: Any) -> bool:
    return settings is not None and getattr(settings, "enabled", True)


def _config(components: dict[str, Any], role: str) -> Any:
    spec = components.get(role)
    return spec.config if spec is not None else None


def has_null_label(denoiser_config: Any) -> bool | None:
    """Whether the denoiser has a null-class row (None: its Config does not say)."""
    if getattr(denoiser_config, "text_conditioned", False):  # the null condition is the conditioner's
        return True
    probability = getattr(denoiser_config, "class_dropout_prob", None)
    return None if probability is None else probability > 0


def check_guidance(components: dict[str, Any], issues: Issues) -> None:
    """Autoguidance needs a ``guide`` role; classifier-free guidance needs the denoiser's null label."""
    guidance = components.get("guidance")
    if guidance is None:
        return
    if getattr(guidance.config, "needs_guide", False) and "guide" not in components:
        issues.add(("components", "guidance"), f"guidance '{guidance.name}' needs a guide denoiser: add a role "
                                               "'guide' (kind: denoiser, with its trained checkpoint)",
                   show_value=False)
    guided = getattr(guidance.config, "scale", None) != 1  # scale 1 runs no extra pass
    if getattr(guidance.config, "needs_null_label", False) and guided:
        if has_null_label(_config(components, "denoiser")) is False:
            issues.add(("components", "guidance"), f"guidance '{guidance.name}' evaluates the null (unconditional) "
                                                   "label, but the denoiser has no null-class row "
                                                   "(class_dropout_prob 0); set the denoiser's class_dropout_prob "
                                                   "> 0 (the reference: 0.1) or the guidance scale to 1",
                       show_value=False)


def check_label_dropout(components: dict[str, Any], train_denoiser: Any, issues: Issues) -> None:
    """The engine's label dropout replaces labels by the null class, which the denoiser must have."""
    if not _enabled(train_denoiser) or getattr(train_denoiser, "label_dropout", None) != "engine":
        return
    dropout = getattr(train_denoiser, "class_dropout", 0)
    if dropout > 0 and has_null_label(_config(components, "denoiser")) is False:
        issues.add(("stages", "train_denoiser", "class_dropout"), "drops labels to the null class, but the "
                   "denoiser has no null-class row (its class_dropout_prob is 0); set the denoiser's "
                   "class_dropout_prob > 0 or class_dropout: 0", dropout)


def check_image_size(components: dict[str, Any], data: DataConfig, issues: Issues) -> None:
    """The decoder's output side (patch_size x tokens per side) is the data's image side."""
    decoder = _config(components, "decoder")
    size = getattr(decoder, "image_size", None)
    if isinstance(size, int) and size != data.image_size:
        grid = getattr(decoder, "grid_size", None)
        fix = (f"; patch_size {data.image_size // grid} would give {data.image_size}"
               if isinstance(grid, int) and grid and data.image_size % grid == 0 else "")
        issues.add(("components", "decoder", "params", "patch_size"), f"the decoder outputs {size} px images "
                   f"({grid} tokens per side x patch_size {getattr(decoder, 'patch_size', '?')}) but "
                   f"data.image_size is {data.image_size}{fix}", show_value=False)


def dataset_classes(data: DataConfig) -> int | None:
    """The number of classes of the data (None when it cannot be known before the run)."""
    if data.source == "digits":
        return DIGITS_CLASSES
    root = Path(data.root).expanduser() if data.root else None
    if root is None or not root.is_dir():
        return None
    return sum(1 for path in root.iterdir() if path.is_dir())  # as the folder dataset counts them


def check_num_classes(components: dict[str, Any], data: DataConfig, issues: Issues) -> None:
    """The denoiser predicts for exactly the dataset's classes (its null label is num_classes)."""
    config = _config(components, "denoiser")
    if getattr(config, "text_conditioned", False):  # prompts, not class labels (the label table is not built)
        return
    classes = getattr(config, "num_classes", None)
    expected = dataset_classes(data)
    if isinstance(classes, int) and expected is not None and classes != expected:
        where = "the digits" if data.source == "digits" else f"data.root {data.root}"
        issues.add(("components", "denoiser", "params", "num_classes"),
                   f"{where} has {expected} classes; set num_classes: {expected}", classes)


def looks_like_path(source: str) -> bool:
    """Whether a weight source is meant as a local path rather than a hub id ``org/name``."""
    return (source.startswith((".", "/", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source)
            or source.lower().endswith(WEIGHT_SUFFIXES))


def shards_present(data: DataConfig) -> bool:
    """Whether every shard of a webdataset source is on this machine."""
    from rae_framework.data.webdataset_index import expand_shards
    from rae_framework.errors import ConfigError

    try:
        expand_shards(data.shards)
    except ConfigError:
        return False
    return True


def check_paths(components: dict[str, Any], data: DataConfig, autoencoder: AutoencoderConfig,
                issues: Issues) -> None:
    """Warn about local inputs that do not exist (yet)."""
    if data.source == "folder" and data.root is None:
        issues.add(("data", "root"), "source 'folder' needs root: a folder of class subfolders", show_value=False)
    elif data.source == "folder" and not Path(data.root).expanduser().is_dir():
        issues.warn(("data", "root"), f"{data.root} is not a folder (yet); the stages that read data would fail")
    elif data.source == "webdataset" and not shards_present(data):
        issues.warn(("data", "shards"), f"{data.shards}: not every shard is here (yet); the stages that read data "
                                        "would fail")
    if autoencoder.statistics and not Path(autoencoder.statistics).expanduser().exists():
        issues.warn(("autoencoder", "statistics"), f"{autoencoder.statistics} does not exist (yet)")
    for role, spec in components.items():
        if spec.checkpoint and not Path(spec.checkpoint).expanduser().is_file():
            issues.warn(("components", role, "checkpoint"), f"{spec.checkpoint} does not exist (yet); the run "
                                                            "would fail when it loads it")
        _check_weights(role, spec.config, issues)


def _check_weights(role: str, config: Any, issues: Issues) -> None:
    weights = getattr(config, "weights", None)
    if not isinstance(weights, str) or getattr(config, "pretrained", True) is False:
        return
    if looks_like_path(weights) and not Path(weights).expanduser().exists():
        issues.warn(("components", role, "params", "weights"), f"{weights} does not exist; it looks like a local "
                    "path (a hub id is 'org/name'), so the run would look it up on the hub and fail")
