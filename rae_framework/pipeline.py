"""Sampling and encoding over a finished run, without YAML: ``load_run(RUN_DIR)`` -> :class:`RAEPipeline`.

The run directory's resolved assembly (``assembly.yaml``) names the components. Weights: where the run
trained a component, its EMA checkpoint (``checkpoints/decoder_ema.safetensors``,
``checkpoints/denoiser_ema.safetensors``) and the computed latent statistics
(``checkpoints/latent_stats.safetensors``); otherwise the component's ``checkpoint:`` (and
``autoencoder.statistics``). A file the run should hold but does not is a :class:`ConfigError` naming it
and the stage that writes it. Class names come from ``classes.json`` in the run directory, else from the
dataset (:func:`rae_framework.data.datasets.class_names`), so labels can be given by name. A folder that
``rae export`` wrote, or a Hub repo id holding one, loads through
:func:`rae_framework.interop.exported.load_exported` into the same pipeline.

Like diffusers' ``DiTPipeline``: ``pipe(labels)`` returns an output whose ``.images`` are PIL images
(``output_type="pt"`` gives a float tensor in [0, 1], ``"np"`` uint8 ``(B, H, W, 3)``, ``"latent"`` the
normalised latents); ``pipe.encode`` / ``pipe.decode`` expose the RAE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from rae_framework.data.datasets import class_names
from rae_framework.engine import (DistContext, RunState, build_rae, generate_batch, load_guide, progress, save_grid,
                                  statistics_file, write_npz)
from rae_framework.engine.distributed import default_device
from rae_framework.errors import ConfigError
from rae_framework.files import file_sha256
from rae_framework.interop.import_run import IMPORTED_ASSEMBLY
from rae_framework.registry import did_you_mean

ASSEMBLY_FILE = "assembly.yaml"
CLASSES_FILE = "classes.json"
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
TRAINED_ROLES = ("decoder", "denoiser")  # the stage that trains role R writes the output "R_ema"


@dataclass
class RAEPipelineOutput:
    """What :meth:`RAEPipeline.__call__` returns: the images (by ``output_type``) and their class labels."""

    images: Any  # list[PIL.Image] | np.ndarray (B, H, W, 3) uint8 | torch.Tensor (B, 3, H, W) or latents
    labels: list[int] = field(default_factory=list)  # class labels; for a text run, the index of the prompt
    prompts: list[str] = field(default_factory=list)  # a text run's prompt of each image


def load_run(run_dir: str | Path, device: str | torch.device | None = None, *,
             local_files_only: bool | None = None) -> RAEPipeline:
    """A pipeline over the finished run in ``run_dir`` (see the module docstring), on ``device``
    (default: CUDA when available, else CPU).

    ``run_dir`` may also be a folder that ``rae export`` wrote, or the id of a Hub repo holding one
    (downloaded through ``huggingface_hub.snapshot_download``; ``local_files_only``, by default on when
    ``HF_HUB_OFFLINE`` is set, reads only the local Hugging Face cache): both load with
    :func:`rae_framework.interop.exported.load_exported`.
    """
    from rae_framework.interop.exported import is_exported, load_exported
    from rae_framework.interop.hub import is_hub_candidate

    if is_exported(run_dir) or is_hub_candidate(run_dir):
        return load_exported(run_dir, device, local_files_only=local_files_only)
    return load_run_dir(Path(run_dir), device)


def load_run_dir(run_dir: Path, device: str | torch.device | None) -> RAEPipeline:
    """:func:`load_run` over a run directory."""
    state = RunState(run_dir, _run_assembly(run_dir), DistContext(device=device_of(device)))
    sources = {role: weights_source(state, role) for role in TRAINED_ROLES if state.has(role)}
    sources["statistics"] = statistics_source(state)
    rae = build_rae(state)
    names = run_class_names(run_dir, state.assembly.data)
    return RAEPipeline(state, rae, _trained_denoiser(state), names, sources)


def _trained_denoiser(state: RunState):
    """The denoiser with the run's EMA weights (or its ``checkpoint``), in eval mode; None for a stage-1 run."""
    if not state.has("denoiser"):
        return None
    denoiser = state.component("denoiser")
    weights = state.output("denoiser_ema")
    if weights is not None:
        denoiser.load_state_dict(load_file(str(weights)))
    return denoiser.to(state.context.device).eval()


def device_of(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device (None: CUDA when available, else CPU); a bad name, or a device this
    machine does not have, is a ConfigError."""
    if device is None:
        return default_device()
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device {device!r}: not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    missing = _missing_device(chosen)
    if missing:
        raise ConfigError(f"device {device!r}: {missing}; choose another (cpu works everywhere)")
    return chosen


def _missing_device(device: torch.device) -> str | None:
    """Why ``device`` cannot be used on this machine, or None when it can."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"no CUDA device here (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return "no MPS device here"
    return None


def _run_assembly(run_dir: Path):
    """The run's resolved assembly (or, in a folder that ``rae import-official`` wrote, its assembly); a
    missing run directory or file is invalid input."""
    from rae_framework.assembly import load_assembly

    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory (a folder written by 'rae run ASSEMBLY --out DIR')")
    for name in (ASSEMBLY_FILE, IMPORTED_ASSEMBLY):  # a run's resolved assembly, else an import's
        if (run_dir / name).is_file():
            return load_assembly(run_dir / name)
    raise ConfigError(f"{run_dir / ASSEMBLY_FILE}: missing; every run directory holds the resolved assembly that "
                      f"'rae run' writes when it starts ('rae import-official' writes {IMPORTED_ASSEMBLY}). "
                      f"Is {run_dir} a run directory?")


def run_output(run: RunState, name: str) -> tuple[str, Path] | None:
    """``(stage, path)`` of the output ``name`` when a stage of the run writes it (the file may be missing)."""
    for stage in run.assembly.stages.enabled():
        if name in run.spec(stage).outputs:
            return stage, run.output_path(name)
    return None


def _existing(run: RunState, name: str) -> tuple[str, Path] | None:
    """:func:`run_output`, with a missing file, or one whose bytes differ from those its stage recorded
    (flipped bits, a copy cut short, an overwrite), as a ConfigError naming it and the stage that writes it:
    damaged weights are never loaded."""
    found = run_output(run, name)
    if found is None:
        return None
    stage, path = found
    rerun = f"'rae run ASSEMBLY --out {run.out_dir} --stage {stage}'"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; the run's {stage} stage writes it (run it with {rerun})")
    record = run.record(stage)
    recorded = record.outputs.get(str(path.relative_to(run.out_dir))) if record is not None else None
    if recorded is not None and file_sha256(path) != recorded:
        raise ConfigError(f"{path}: damaged or changed since the {stage} stage wrote it (its sha256 differs from "
                          f"the one in {run.record_path(stage)}); restore the file, or write it again with {rerun}")
    return found


def weights_source(run: RunState, role: str) -> str:
    """Where ``role``'s trained weights come from: the run's EMA output when a stage of the run trains it,
    else the component's ``checkpoint``; a ConfigError when neither is there."""
    found = _existing(run, f"{role}_ema")
    if found is not None:
        return f"{found[1].relative_to(run.out_dir)} ({found[0]}, EMA)"
    checkpoint = run.assembly.spec(role).checkpoint
    if checkpoint is None:
        raise ConfigError(f"components.{role}: no trained weights: no stage of this run writes '{role}_ema' and "
                          f"components.{role}.checkpoint is not set in {run.out_dir / ASSEMBLY_FILE}")
    return f"{checkpoint} (components.{role}.checkpoint)"


def statistics_source(run: RunState) -> str:
    """Where the latent statistics come from (a missing file of this run is a ConfigError)."""
    found = _existing(run, "latent_stats")
    if found is not None:
        return f"{found[1].relative_to(run.out_dir)} ({found[0]})"
    path = statistics_file(run, computed=False)
    return "none (latents not normalised)" if path is None else f"{path} (autoencoder.statistics)"


def run_class_names(run_dir: Path, data_config) -> list[str] | None:
    """``RUN_DIR/classes.json`` (a JSON list of names, index = label), else the dataset's class names."""
    path = Path(run_dir) / CLASSES_FILE
    if not path.is_file():
        return class_names(data_config)
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON list of class names ({error})") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"{path}: expected a JSON list of class names (strings), index = class label")
    return names


class RAEPipeline:
    """Class-conditional sampling and the RAE of a finished run; build it with :func:`load_run`.

    Its ``repr`` lists each component with its size and where its weights came from (paths under
    ``checkpoints/`` are the run's own), the sampling settings, the latent shape and the classes.
    """

    def __init__(self, state: RunState, rae, denoiser, names: list[str] | None, sources: dict[str, str]) -> None:
        self._state, self.rae, self.denoiser = state, rae, denoiser
        self.class_names, self.weight_sources = names, sources
        self.schedule = state.optional("schedule")
        conditioner = state.optional("conditioner") if denoiser is not None else None
        self.conditioner = None if conditioner is None else conditioner.to(state.context.device).eval()

    @property
    def takes_prompts(self) -> bool:
        """Whether the run is text-conditioned: ``pipe("a prompt")`` instead of class labels."""
        return getattr(self.conditioner, "input_kind", None) == "text"

    # --- what it is --------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self._state.context.device

    @property
    def run_dir(self) -> Path:
        """The run directory the pipeline was loaded from."""
        return self._state.out_dir

    @property
    def assembly(self):
        """The run's resolved :class:`~rae_framework.assembly.Assembly`."""
        return self._state.assembly

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of the normalised latents."""
        return tuple(self.rae.latent_shape)

    @property
    def num_classes(self) -> int:
        """Class labels are ``0 .. num_classes - 1`` (the denoiser's; for a stage-1 run the dataset's)."""
        return self.denoiser.num_classes if self.denoiser is not None else len(self.class_names or ())

    def __repr__(self) -> str:
        specs = self.assembly.components
        lines = [f"RAEPipeline(run={str(self.run_dir)!r}, device={self.device})"]
        modules = {"encoder": self.rae.encoder, "decoder": self.rae.decoder, "denoiser": self.denoiser}
        for role, module in ((role, module) for role, module in modules.items() if module is not None):
            size = f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M params"
            lines.append(f"  {role:<10} {specs[role].name:<14} {size:<14} {self._source(role)}")
        lines.append(f"  {'statistics':<10} {'':<29} {self.weight_sources['statistics']}")
        for role in ("conditioner", "schedule", "sampler", "guidance", "guide"):
            if role in specs:
                lines.append(f"  {role:<10} {specs[role].name:<14} {_params_summary(specs[role].params)}")
        lines.append(f"  latents    {'x'.join(map(str, self.latent_shape))}; {self._classes_summary()}")
        return "\n".join(lines)

    def _source(self, role: str) -> str:
        if role in self.weight_sources:
            return self.weight_sources[role]
        spec = self.assembly.spec(role)
        if spec.checkpoint:
            return f"{spec.checkpoint} (components.{role}.checkpoint)"
        if spec.params.get("pretrained") is False:
            return "random weights (pretrained: false)"
        return f"{spec.params.get('weights') or 'default pretrained weights'} (frozen)"

    def _classes_summary(self) -> str:
        if not self.class_names:
            return f"{self.num_classes} classes (no names)"
        shown = ", ".join(self.class_names[:5]) + (", ..." if len(self.class_names) > 5 else "")
        return f"{self.num_classes} classes: {shown}"

    def to(self, device: str | torch.device) -> RAEPipeline:
        """Move the models to ``device`` (as diffusers' ``pipe.to("cuda")``); returns the pipeline."""
        self._state.context = DistContext(device=device_of(device))
        self.rae.to(self.device)
        if self.denoiser is not None:
            self.denoiser.to(self.device)
        if self.conditioner is not None:
            self.conditioner.to(self.device)
        return self

    # --- labels ------------------------------------------------------------------------------------------
    def get_label_ids(self, labels: int | str | Sequence[int | str] | torch.Tensor) -> list[int]:
        """Class indices for ``labels``: ints are indices, strings class names (``'tench'``)."""
        if isinstance(labels, torch.Tensor):
            labels = labels.reshape(-1).tolist()
        elif isinstance(labels, (int, str)):
            labels = [labels]
        return [self._label_id(label) for label in labels]

    def _label_id(self, label: int | str) -> int:
        if isinstance(label, str):
            return self._name_id(label)
        if not isinstance(label, (int, np.integer)) or not 0 <= int(label) < self.num_classes:
            raise ConfigError(f"label {label!r}: class labels are 0 .. {self.num_classes - 1}")
        return int(label)

    def _name_id(self, name: str) -> int:
        if not self.class_names:
            raise ConfigError(f"label {name!r}: this run has no class names ({self.run_dir / CLASSES_FILE} is "
                              f"absent and the dataset names none); give class indices 0 .. {self.num_classes - 1}")
        if name not in self.class_names:
            raise ConfigError(f"unknown class name {name!r}.{did_you_mean(name, self.class_names)} "
                              f"This run's classes: {_shorten(self.class_names)}")
        return self.class_names.index(name)

    # --- sampling ----------------------------------------------------------------------------------------
    def __call__(self, labels: int | str | Sequence[int | str] | torch.Tensor, *, num_images_per_label: int = 1,
                 num_steps: int | None = None, guidance_scale: float | None = None, sampler: str | None = None,
                 guidance: str | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                 batch_size: int = 64, output_type: str = "pil", progress_bar: bool = True) -> RAEPipelineOutput:
        """Generate ``num_images_per_label`` images for each of ``labels`` (class-major order): class labels, or
        for a text-conditioned run a prompt or a list of prompts (``pipe("a seven")``).

        ``num_steps``, ``sampler``, ``guidance`` (``none``, ``cfg``, ``autoguidance``) and ``guidance_scale``
        replace the run's settings for this call. Noise comes from ``generator`` (a CPU generator), else from
        one seeded with ``seed``, else from a random seed.
        """
        if self.denoiser is None:
            raise ConfigError(f"{self.run_dir}: this run has no denoiser (a stage-1 run); it can only encode and "
                              "decode (pipe.encode, pipe.decode)")
        if output_type not in OUTPUT_TYPES:
            raise ConfigError(f"output_type {output_type!r}: expected one of {', '.join(OUTPUT_TYPES)}")
        if num_images_per_label < 1 or batch_size < 1:
            raise ConfigError(f"num_images_per_label ({num_images_per_label}) and batch_size ({batch_size}) "
                              "must be positive")
        prompts = self._prompts(labels)
        ids = torch.tensor(self.get_label_ids(labels) if prompts is None else range(len(prompts)),
                           dtype=torch.int64).repeat_interleave(num_images_per_label)
        flow_sampler = self._sampler(sampler, num_steps)
        flow_guidance, guide = self._guidance(guidance, guidance_scale)
        generator = generator or _generator(seed)
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        decode = self._decode_into(kept) if output_type in ("pt", "latent") else self.decode
        batches = []
        bar = progress(-(-len(ids) // batch_size), "sample", enabled=progress_bar)
        for chunk in ids.split(batch_size):
            condition, null = self._condition(chunk, prompts)
            batches.append(generate_batch(self.denoiser, self.schedule, flow_sampler, decode, condition, generator,
                                          guidance=flow_guidance, guide=guide, device=self.device, null=null))
            bar.update(1)
        bar.close()
        shown = [prompts[k] for k in ids.tolist()] if prompts is not None else []
        return RAEPipelineOutput(_images(output_type, batches, kept), ids.tolist(), shown)

    def _prompts(self, labels) -> list[str] | None:
        """A text run's prompts (a string or a list of strings); None for a class run."""
        if not self.takes_prompts:
            return None
        prompts = [labels] if isinstance(labels, str) else list(labels) if isinstance(labels, (list, tuple)) else []
        if not prompts or not all(isinstance(prompt, str) for prompt in prompts):
            raise ConfigError(f"{self.run_dir}: a text-conditioned run takes prompts (strings), got {labels!r}")
        return prompts

    def _condition(self, chunk: torch.Tensor, prompts: list[str] | None):
        """``(condition, null)`` of a chunk of ids: labels (no null: the guidance takes the null label) or the
        conditioner's encoding of their prompts and its null condition."""
        if prompts is None:
            return chunk, None
        return self.conditioner.encode([prompts[k] for k in chunk.tolist()]), self.conditioner.null(len(chunk))

    def _decode_into(self, kept: list[tuple[torch.Tensor, torch.Tensor]]):
        """:meth:`decode` that also keeps the latents and float images (for ``output_type`` pt/latent)."""
        def decode(latents: torch.Tensor) -> torch.Tensor:
            images = self.decode(latents)
            kept.append((latents.cpu(), images.cpu()))
            return images
        return decode

    def _sampler(self, name: str | None, num_steps: int | None):
        """The run's sampler, or one with another name or step count."""
        spec = self.assembly.components.get("sampler")
        same = spec is not None and name in (None, spec.name)
        if same and num_steps in (None, spec.params.get("num_steps")):
            return self._state.component("sampler")
        if spec is None and name is None:
            raise ConfigError("the run's assembly has no sampler; choose one (sampler='euler' / --sampler euler)")
        params = dict(spec.params) if same else {}
        steps = num_steps if num_steps is not None or spec is None else spec.params.get("num_steps")
        if steps is not None:
            params["num_steps"] = steps
        return self._state.session.build("sampler", name or spec.name, params)

    def _guidance(self, name: str | None, scale: float | None):
        """``(guidance, guide)``: the run's guidance, or another one / another scale; ``none`` = unguided."""
        spec = self.assembly.components.get("guidance")
        name = name or (spec.name if spec else None)
        if name in (None, "none"):
            if scale is not None and scale != 1.0:
                raise ConfigError(f"guidance scale {scale}: this run samples without guidance; "
                                  "choose one (e.g. guidance='cfg' / --guidance cfg)")
            return None, None
        params = dict(spec.params) if spec is not None and spec.name == name else {}
        if scale is not None:
            params["scale"] = scale
        same = spec is not None and params == spec.params and spec.name == name
        component = self._state.component("guidance") if same else self._state.session.build("guidance", name, params)
        guide = load_guide(self._state) if getattr(component, "needs_guide", False) else None
        return component, guide

    # --- the autoencoder ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor | Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        """Images (``(B, 3, H, W)`` in [0, 1], or PIL) -> normalised latents ``(B, C, h, w)``."""
        pixels = images if isinstance(images, torch.Tensor) else pil_to_tensor(images)
        if pixels.dim() == 3:
            pixels = pixels[None]
        return self.rae.encode(pixels.to(self.device))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, C, h, w)`` -> images ``(B, 3, H, W)`` clamped to [0, 1]."""
        return self.rae.decode(latents.to(self.device)).clamp(0.0, 1.0)


def pil_to_tensor(images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
    """PIL image(s) of one size -> ``(B, 3, H, W)`` float32 in [0, 1] (RGB)."""
    images = [images] if isinstance(images, Image.Image) else list(images)
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]  # (H, W, 3) each
    if len({array.shape for array in arrays}) > 1:
        raise ConfigError("encode: the images differ in size; resize them to one size first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)


def _images(output_type: str, batches: list[np.ndarray], kept: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """The generated images in the requested form."""
    if output_type == "latent":
        return torch.cat([latents for latents, _ in kept])  # (B, C, h, w)
    if output_type == "pt":
        return torch.cat([images for _, images in kept])  # (B, 3, H, W) in [0, 1]
    array = np.concatenate(batches) if batches else np.zeros((0, 0, 0, 3), np.uint8)  # (B, H, W, 3) uint8
    return array if output_type == "np" else [Image.fromarray(image) for image in array]


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _params_summary(params: dict[str, Any]) -> str:
    shown = {key: value for key, value in params.items() if key in ("num_steps", "scale", "shift_base", "t_min",
                                                                        "t_max", "time_distribution")}
    return ", ".join(f"{key}={value}" for key, value in shown.items())


def _shorten(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def save_samples(output: RAEPipelineOutput, *, grid: str | Path | None = None, npz: str | Path | None = None,
                 columns: int = 8) -> list[Path]:
    """Write ``output`` (``output_type="np"``) as a grid PNG (one row per class, ``columns`` images each)
    and/or an ADM-layout ``.npz``; returns the paths written."""
    images, labels, written = output.images, np.asarray(output.labels, dtype=np.int64), []
    if grid is not None:
        save_grid(images, labels, Path(grid), columns, max_classes=len(set(output.labels)))
        written.append(Path(grid))
    if npz is not None:
        Path(npz).parent.mkdir(parents=True, exist_ok=True)
        write_npz(Path(npz), images, labels)
        written.append(Path(npz))
    return written
