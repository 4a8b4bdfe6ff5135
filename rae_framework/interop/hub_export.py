"""``rae export RUN_DIR --format diffusers OUT_DIR``: a finished run as a folder for diffusers and the Hub.

What it writes is described in :mod:`rae_framework.interop.exported` (which reads it back). The run is
loaded as ``load_run`` loads it (so a run without its finished stage outputs is refused with the file and the
stage to run), the folder is written under a temporary name beside ``OUT_DIR`` and renamed at the end, so
that ``OUT_DIR`` is either absent, the previous export (without ``--force``: refused when not empty) or
complete. ``huggingface-cli upload USER/NAME OUT_DIR`` publishes it as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from rae_framework.errors import ConfigError
from rae_framework.files import full_disk_reported
from rae_framework.interop.exported import (CONFIG_FILE, GUIDE_DIR, SAMPLING_ROLES, SCHEDULER_DIR, SCHEDULER_FILE,
                                            TRANSFORMER_DIR, VAE_DIR, WEIGHTS_FILE)

EXPORT_FORMATS = ("diffusers",)
DEFAULT_LICENSE = "mit"


def check_target(out_dir: Path, run_dir: Path, force: bool) -> None:
    """``OUT_DIR`` must be absent or an empty folder, unless ``force`` (then it is replaced at the end), and
    apart from the run directory: neither it, inside it nor above it (``--force`` would have removed the run)."""
    relation = _relation(out_dir.resolve(), run_dir.resolve())
    if relation:
        raise ConfigError(f"{out_dir}: {relation} the run directory {run_dir}; export to a folder apart from it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a folder; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ConfigError(f"{out_dir}: not empty; choose another OUT_DIR or pass --force to replace it")


def _relation(out_path: Path, run_path: Path) -> str | None:
    """How the resolved ``out_path`` overlaps the run directory ``run_path``: 'is', 'inside', 'holds' or None."""
    if out_path == run_path:
        return "is"
    if run_path in out_path.parents:
        return "inside"
    return "holds" if out_path in run_path.parents else None


def export_run(run_dir: str | Path, out_dir: str | Path, *, export_format: str = "diffusers", force: bool = False,
               license_id: str = DEFAULT_LICENSE, repo_id: str | None = None) -> Path:
    """Export the finished run ``run_dir`` into ``out_dir`` (see the module docstring); returns ``out_dir``.
    ``repo_id`` is the Hub repo the model card's snippets load (default ``USER/<OUT_DIR name>``)."""
    from rae_framework.pipeline import load_run_dir

    if export_format not in EXPORT_FORMATS:
        raise ConfigError(f"--format {export_format!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    out_dir = Path(out_dir)
    check_target(out_dir, Path(run_dir), force)
    pipe = load_run_dir(Path(run_dir), "cpu")
    check_exportable(pipe)
    partial = out_dir.absolute().with_name(f".{out_dir.absolute().name}.partial{os.getpid()}")  # beside OUT_DIR
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with full_disk_reported(out_dir.parent, out_dir.name):
            write_export(pipe, partial, license_id, repo_id or f"USER/{out_dir.name}")
        _replace(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out_dir


def check_exportable(pipe: Any) -> None:
    """A stage-2 run: the export is a whole generator."""
    if pipe.denoiser is None:
        raise ConfigError(f"{pipe.run_dir}: a stage-1 run (no denoiser); 'rae export' writes a whole generator, "
                          "so train the denoiser first (stage train_denoiser)")


def _replace(partial: Path, out_dir: Path) -> None:
    """Rename the finished ``partial`` folder to ``out_dir`` (a previous ``out_dir`` is removed after)."""
    previous = partial.with_name(f".{out_dir.absolute().name}.previous{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, previous)
    os.replace(partial, out_dir)
    shutil.rmtree(previous, ignore_errors=True)


def write_export(pipe: Any, folder: Path, license_id: str, repo_name: str) -> None:
    """Every file of the export into ``folder``."""
    from rae_framework.interop.diffusers_export import export_diffusers_vae

    folder.mkdir(parents=True)
    export_diffusers_vae(pipe.rae, folder / VAE_DIR, pipe.assembly.spec("encoder").name)
    write_denoiser(pipe.assembly.spec("denoiser"), pipe.denoiser, folder / TRANSFORMER_DIR)
    if "guide" in pipe.assembly.components:  # autoguidance's guide denoiser, with the weights its checkpoint names
        write_denoiser(pipe.assembly.spec("guide"), guide_denoiser(pipe), folder / GUIDE_DIR)
    write_json(folder / SCHEDULER_DIR / SCHEDULER_FILE, scheduler_config(pipe))
    if pipe.class_names:
        write_json(folder / "classes.json", list(pipe.class_names))
    metrics = _copy_run_files(pipe, folder)
    (folder / "README.md").write_text(model_card(pipe, metrics, (folder / "samples" / "grid.png").is_file(),
                                                 license_id, repo_name), encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def guide_denoiser(pipe: Any) -> Any:
    """The run's autoguidance guide, built as the pipeline builds it."""
    from rae_framework.engine import DistContext, RunState, load_guide

    return load_guide(RunState(pipe.run_dir, pipe.assembly, DistContext(device=pipe.device)))


def write_denoiser(spec: Any, denoiser: Any, folder: Path) -> None:
    """``transformer/`` (or ``guide/``): the denoiser's weights and what rebuilds it through the registry."""
    from safetensors.torch import save_file

    from rae_framework import __version__
    from rae_framework.engine.checkpoints import module_tensors

    folder.mkdir(parents=True)
    save_file(module_tensors(denoiser), str(folder / WEIGHTS_FILE))
    write_json(folder / CONFIG_FILE, {"_class_name": type(denoiser).__name__,
                                      "_rae_framework_version": __version__, "kind": spec.kind, "name": spec.name,
                                      "params": spec.params})


def scheduler_config(pipe: Any) -> dict[str, Any]:
    """The sampling settings: schedule, sampler and guidance (name + resolved params; None when absent)."""
    from rae_framework import __version__

    components = pipe.assembly.components
    roles = {role: {"name": components[role].name, "params": components[role].params} if role in components else None
             for role in SAMPLING_ROLES}
    run = {"name": pipe.assembly.name, "seed": pipe.assembly.seed, "image_size": pipe.assembly.data.image_size}
    return {"_rae_framework_version": __version__, **roles, "run": run}


def _copy_run_files(pipe: Any, folder: Path) -> dict[str, Any] | None:
    """``metrics.json`` and the sample grid of the run, when it has them; returns the metrics."""
    metrics_file = pipe.run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    if metrics is not None:
        shutil.copyfile(metrics_file, folder / "metrics.json")
    grid = _grid_file(pipe)
    if grid is not None:
        (folder / "samples").mkdir()
        shutil.copyfile(grid, folder / "samples" / "grid.png")
    return metrics


def _grid_file(pipe: Any) -> Path | None:
    """The run's sample grid (the ``grid`` output of its sample stage), when written."""
    for stage in pipe.assembly.stages.enabled():
        relative = pipe.assembly.stages.spec(stage).outputs.get("grid")
        if relative is not None and (pipe.run_dir / relative).is_file():
            return pipe.run_dir / relative
    return None


def model_card(pipe: Any, metrics: dict[str, Any] | None, has_grid: bool, license_id: str, repo_name: str) -> str:
    from rae_framework.interop.model_card import render_card

    components = pipe.assembly.components
    return render_card(repo_name=repo_name, assembly_yaml=pipe.assembly.to_yaml(), metrics=metrics,
                       has_grid=has_grid, encoder=components["encoder"].name, denoiser=components["denoiser"].name,
                       latent_shape=pipe.latent_shape, license_id=license_id, num_classes=pipe.num_classes)


def add_export_arguments(command: argparse.ArgumentParser) -> None:
    """The arguments of ``rae export``."""
    command.add_argument("run_dir", metavar="RUN_DIR", help="finished run directory written by 'rae run'")
    command.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (absent or empty, unless --force)")
    command.add_argument("--format", required=True, dest="export_format", metavar="FORMAT",
                         help=f"export format: {', '.join(EXPORT_FORMATS)}")
    command.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    command.add_argument("--license", default=DEFAULT_LICENSE, dest="license_id", metavar="ID",
                         help=f"license in the model card's metadata (a Hub license id; default {DEFAULT_LICENSE})")
    command.add_argument("--repo-id", default=None, metavar="USER/NAME",
                         help="the Hub repo the model card's code snippets load (default: USER/<OUT_DIR name>)")


def cmd_export(args: argparse.Namespace) -> int:
    """``rae export``: write the folder, say what to do with it."""
    out_dir = export_run(args.run_dir, args.out_dir, export_format=args.export_format, force=args.force,
                         license_id=args.license_id, repo_id=args.repo_id)
    print(f"exported {args.run_dir} to {out_dir} (vae/, transformer/, scheduler/, README.md)")
    print(f"  load it: rae_framework.load_exported({str(out_dir)!r}); publish it: "
          f"huggingface-cli upload {args.repo_id or 'USER/NAME'} {out_dir}")
    return 0
