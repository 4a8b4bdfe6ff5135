"""The command-line interface: ``rae`` / ``python -m rae_framework``.

Exit codes: 0 ok, 2 invalid input (an assembly, a name, a parameter: the message says ``file:line`` and
the dotted path) or a run directory that another process holds, 1 failure while running, 75 preempted
(SIGTERM/SIGUSR1/SIGUSR2: a training stage saved a checkpoint at its last finished step, ``sample``/``evaluate``
their last finished batch; rerun to resume). Tracebacks only with ``--debug``. ``list``, ``describe``,
``validate``, ``schema``, ``plugins`` and ``--help`` never import torch; ``run``, ``submit`` and ``sample`` do.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from rae_framework.errors import ConfigError, PreemptedError, RAEError, RunDirectoryLockedError

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: progress saved on SIGTERM/SIGUSR1; rerun (or requeue) to resume


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except (ConfigError, RunDirectoryLockedError) as error:
        return _report(error, args.debug, EXIT_INVALID)
    except PreemptedError as error:
        return _report(error, args.debug, EXIT_PREEMPTED)
    except BrokenPipeError:  # output piped into e.g. `head`
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - the CLI turns any failure into exit code 1
        return _report(error, args.debug, EXIT_FAILURE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _report(error: BaseException, debug: bool, code: int) -> int:
    if debug:
        traceback.print_exc()
    label = "error" if isinstance(error, RAEError) else f"error ({type(error).__name__})"
    print(f"{label}: {error}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all sub-commands."""
    from rae_framework import __version__

    parser = argparse.ArgumentParser(prog="rae", description="Representation Autoencoders + Diffusion "
                                     "Transformers, assembled from YAML.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"rae-framework {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_submit(commands)
    _add_validate(commands)
    _add_list(commands)
    _add(commands, "describe", cmd_describe, "every parameter of a component (type, default, description) "
                                             "and its presets; for 'recipe NAME' the recipe file",
         [("kind", {"help": "component kind, or 'recipe'"}), ("name", {"help": "component or recipe name"})])
    _add(commands, "plugins", cmd_plugins, "plugins: loaded, failed (with the error), disabled",
         [("--json", {"action": "store_true", "help": "machine-readable output"}),
          ("--check", {"action": "store_true", "help": "also import every component class (imports torch); "
                                                      "exit 1 if any plugin or reference is broken"})])
    _add(commands, "schema", cmd_schema, "JSON Schema of assembly files (for editor autocompletion)", [])
    _add_sample(commands)
    _add_import_official(commands)
    _add_import(commands)
    _add_export(commands)
    _add(commands, "sweep", cmd_sweep, "run an assembly over a grid of overrides (cross product, repeated "
                                       "seeds), reusing shared stages; table, sweep.csv and sweep.png", [
        ("assembly", {"help": "assembly YAML file"}),
        ("--grid", {"action": "append", "required": True, "metavar": "KEY=V1,V2", "dest": "grid",
                    "help": "a dotted key and its values (YAML-typed, commas inside [] kept), repeatable"}),
        ("--repeat-seeds", {"type": int, "default": 1, "metavar": "N",
                            "help": "run each point with the seeds seed .. seed+N-1 (default 1)"}),
        ("--metrics", {"default": None, "metavar": "A,B", "help": "metric keys for the table and plot "
                       "(a key or its part before '@'; default: all but per-class ones)"}),
        ("--out", {"default": None, "metavar": "DIR", "help": "parent of the run directories "
                                                              "(default: runs/<name>-sweep)"}),
        ("--reuse", {"action": "append", "default": [], "metavar": "DIR",
                     "help": "another sweep's folder (or a run directory) whose finished stages may be adopted"}),
        SET_OPTION,
    ])
    return parser


def _add(commands: Any, name: str, handler: Callable[[argparse.Namespace], int], help_text: str,
         arguments: list[tuple[str, dict[str, Any]]]) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=help_text, description=help_text)
    command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    for flag, options in arguments:
        command.add_argument(flag, **options)
    command.set_defaults(command=handler)
    return command


SET_OPTION = ("--set", {"action": "append", "default": [], "metavar": "KEY=VALUE", "dest": "overrides",
                        "help": "override a value by dotted path, YAML-typed (repeatable), "
                                "e.g. --set stages.train_denoiser.steps=5"})


def _add_run(commands: Any) -> None:
    _add(commands, "run", cmd_run, "run the stages of an assembly", [
        ("assembly", {"help": "assembly YAML file"}),
        ("--out", {"default": None, "metavar": "DIR", "help": "run directory (default: runs/<name>)"}),
        SET_OPTION,
        ("--fresh", {"action": "store_true",
                     "help": "start over: finished stages run again and training stages start from step 0 "
                             "(their step checkpoints are moved aside); by default a run skips finished stages "
                             "and continues from the last checkpoints in --out"}),
        ("--stage", {"action": "append", "default": None, "dest": "stages", "metavar": "NAME",
                     "help": "run only this registered stage (repeatable; `rae list stage` names them); the "
                             "stages it reads must have finished in --out"}),
    ])


def _add_submit(commands: Any) -> None:
    _add(commands, "submit", cmd_submit, "run an assembly as one SLURM job of nodes x GPUs tasks through submitit "
                                         "(checkpointed and requeued on preemption and at the time limit)", [
        ("assembly", {"help": "assembly YAML file"}),
        ("--out", {"default": None, "metavar": "DIR", "help": "run directory (default: runs/<name>)"}),
        SET_OPTION,
        ("--stage", {"action": "append", "default": None, "dest": "stages", "metavar": "NAME",
                     "help": "run only this stage (repeatable), as 'rae run --stage'"}),
        ("--nodes", {"type": _positive_int, "default": 1, "metavar": "N", "help": "nodes (default 1)"}),
        ("--gpus-per-node", {"type": int, "required": True, "metavar": "G",
                             "help": "GPUs per node, one task each; 0 for a CPU job (then --tasks-per-node)"}),
        ("--tasks-per-node", {"type": _positive_int, "default": None, "metavar": "N",
                              "help": "processes per node (default: --gpus-per-node)"}),
        ("--time", {"default": None, "metavar": "LIMIT", "help": "time limit: minutes, HH:MM:SS or D-HH:MM:SS "
                                                                 "(required on SLURM; --local: 24 h)"}),
        ("--partition", {"default": None, "help": "sbatch --partition"}),
        ("--account", {"default": None, "help": "sbatch --account"}),
        ("--qos", {"default": None, "help": "sbatch --qos"}),
        ("--cpus-per-task", {"type": _positive_int, "default": None, "metavar": "N", "help": "sbatch --cpus-per-task"}),
        ("--mem", {"default": None, "metavar": "SIZE", "help": "memory per node, as sbatch: 64G, 0 = all"}),
        ("--job-name", {"default": None, "help": "default: the assembly's name"}),
        ("--signal-delay-s", {"type": int, "default": 120, "metavar": "S",
                              "help": "the notice (SIGUSR2) comes this long before the time limit: a step and a "
                                      "checkpoint write must fit (default 120)"}),
        ("--max-timeouts", {"type": int, "default": 3, "metavar": "N",
                            "help": "requeues at the time limit before the job gives up (preemptions do not "
                                    "count; default 3)"}),
        ("--folder", {"default": None, "metavar": "LOGDIR",
                      "help": "submitit's folder: scripts, pickles, one log per task (default: OUT/submitit)"}),
        ("--dry-run", {"action": "store_true", "help": "print the sbatch script and submit nothing"}),
        ("--local", {"action": "store_true", "help": "run the tasks on this machine (submitit's local executor) "
                                                     "and wait"}),
    ])


def cmd_submit(args: argparse.Namespace) -> int:
    """``rae submit``: see :mod:`rae_framework.submit`."""
    from rae_framework.submit import submit_command

    return submit_command(args, _session())


def _add_validate(commands: Any) -> None:
    _add(commands, "validate", cmd_validate, "check an assembly without running it; prints the resolved "
                                             "assembly with --print", [
        ("assembly", {"help": "assembly YAML file"}),
        SET_OPTION,
        ("--print", {"action": "store_true", "dest": "show", "help": "print the resolved assembly"}),
        ("--out", {"default": None, "metavar": "DIR", "help": "the run directory 'run' will use (default: "
                                                              "runs/<name>), for the latent cache's disk check"}),
    ])


def _add_list(commands: Any) -> None:
    _add(commands, "list", cmd_list, "registered components (of one kind), or the preset catalog", [
        ("what", {"nargs": "?", "default": None, "metavar": "KIND|presets",
                  "help": "a kind (encoder, decoder, ...), 'presets' (the whole catalog) or 'recipe'"}),
        ("--json", {"action": "store_true", "help": "machine-readable output"}),
    ])


def _add_sample(commands: Any) -> None:
    _add(commands, "sample", cmd_sample, "generate images of given classes with a finished run's EMA weights: a "
                                         "grid PNG (--out) and/or an ADM-layout .npz (--npz)", [
        ("run_dir", {"metavar": "RUN_DIR", "help": "run directory written by 'rae run', a folder written by "
                                                   "'rae export', or the Hub repo id of one"}),
        ("--labels", {"default": None, "metavar": "L1,L2,...",
                      "help": "class runs: comma-separated class indices or names (e.g. 207,360 or tench,goldfish)"}),
        ("--prompt", {"action": "append", "default": None, "dest": "prompts", "metavar": "TEXT",
                      "help": "text runs: a prompt, one grid row (repeat for more: --prompt 'a seven' --prompt ...)"}),
        ("--per-label", {"type": _positive_int, "default": 4, "dest": "per_label", "metavar": "N",
                         "help": "images per label, one grid row per label (default 4)"}),
        ("--guidance", {"default": None, "metavar": "NAME", "help": "none, cfg or autoguidance (default: the run's)"}),
        ("--scale", {"type": float, "default": None, "help": "guidance scale (default: the run's)"}),
        ("--steps", {"type": _positive_int, "default": None, "help": "sampler grid points (default: the run's)"}),
        ("--sampler", {"default": None, "metavar": "NAME", "help": "euler, heun, dopri5, sde (default: the run's)"}),
        ("--seed", {"type": int, "default": 0, "help": "noise seed (default 0)"}),
        ("--batch-size", {"type": _positive_int, "default": 64, "dest": "batch_size", "help": "images per batch"}),
        ("--device", {"default": None, "help": "cpu, cuda, cuda:1, ... (default: CUDA when available)"}),
        ("--offline", {"action": "store_true", "default": None, "help": "for a Hub repo id: read only the local "
                                                                      "Hugging Face cache (default: HF_HUB_OFFLINE)"}),
        ("--out", {"default": None, "metavar": "FILE", "help": "grid image (PNG): one row per label"}),
        ("--npz", {"default": None, "metavar": "FILE",
                   "help": "ADM layout: arr_0 uint8 (N, H, W, 3), arr_1 int64 labels"}),
    ])


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def cmd_sample(args: argparse.Namespace) -> int:
    """``rae sample``: the run's pipeline (:func:`rae_framework.load_run`) -> grid PNG and/or ADM .npz."""
    if args.out is None and args.npz is None:
        raise ConfigError("sample: name an output: --out FILE (grid PNG) and/or --npz FILE (ADM layout)")
    if (args.labels is None) == (args.prompts is None):
        raise ConfigError("sample: give --labels (a class run) or --prompt (a text run), one of the two")
    from rae_framework.files import check_output_file
    from rae_framework.pipeline import load_run, save_samples

    for option, path in (("--out", args.out), ("--npz", args.npz)):
        if path is not None:
            check_output_file(path, option)

    pipe = load_run(args.run_dir, device=args.device, local_files_only=args.offline)
    if pipe.takes_prompts != (args.prompts is not None):
        raise ConfigError(f"sample: {args.run_dir} is a {'text' if pipe.takes_prompts else 'class'}-conditioned run: "
                          f"use {'--prompt' if pipe.takes_prompts else '--labels'}")
    labels = args.prompts if args.prompts is not None else _label_tokens(args.labels)
    output = pipe(labels, num_images_per_label=args.per_label, num_steps=args.steps, guidance_scale=args.scale,
                  sampler=args.sampler, guidance=args.guidance, seed=args.seed, batch_size=args.batch_size,
                  output_type="np")
    for path in save_samples(output, grid=args.out, npz=args.npz, columns=args.per_label):
        print(f"wrote {path}")
    return EXIT_OK


def _label_tokens(text: str) -> list[int | str]:
    """``"207,tench"`` -> ``[207, "tench"]``: integers are class indices, anything else a class name."""
    tokens = [token.strip() for token in text.split(",")]
    if not all(tokens):
        raise ConfigError(f"--labels: empty label in {text!r} (give comma-separated indices or names)")
    return [int(token) if token.lstrip("-").isdigit() else token for token in tokens]


def _add_import_official(commands: Any) -> None:
    file_option = {"default": None, "metavar": "FILE"}
    _add(commands, "import-official", cmd_import_official, "import the reference implementation's released "
         "checkpoints (decoder model.pt, stat.pt, DiT stage2_model.pt) into a run directory", [
             ("assembly", {"help": "assembly naming the architectures (e.g. a sampling recipe)"}),
             ("--out", {"required": True, "metavar": "DIR", "help": "run directory to write"}),
             ("--decoder", {**file_option, "help": "GeneralDecoder model.pt or a stage-1 checkpoint"}),
             ("--stats", {**file_option, "help": "latent statistics stat.pt"}),
             ("--denoiser", {**file_option, "help": "DiT checkpoint (its 'ema' when it has one)"}),
             ("--guide", {**file_option, "help": "autoguidance guide checkpoint"}),
             SET_OPTION,
         ])


def cmd_import_official(args: argparse.Namespace) -> int:
    """``rae import-official``: reference checkpoints -> ``OUT/checkpoints/*.safetensors`` + ``OUT/imported.yaml``."""
    from pathlib import Path

    from rae_framework.interop.import_run import OfficialFiles, import_official_run

    files = OfficialFiles(**{role: Path(getattr(args, role)) for role in ("decoder", "stats", "denoiser", "guide")
                             if getattr(args, role) is not None})
    path = import_official_run(args.assembly, files, args.out, args.overrides)
    print(f"imported into {args.out}; sample and evaluate with: rae run {path} --out {args.out}")
    return EXIT_OK


def _add_import(commands: Any) -> None:
    _add(commands, "import", cmd_import, "import a published diffusers AutoencoderRAE (folder or Hub repo id) into a "
         "run directory whose assembly trains stage 2 on it", [
             ("source", {"metavar": "SOURCE", "help": "AutoencoderRAE folder (config.json + diffusion_pytorch_model"
                                                      ".safetensors; a pipeline folder's vae/) or Hub repo id"}),
             ("--out", {"required": True, "metavar": "DIR", "help": "run directory to write"}),
             ("--assembly", {"default": None, "metavar": "FILE", "help": "stage-2 assembly (denoiser, schedule, "
                             "data, stages); its encoder, decoder and statistics are replaced by the imported ones "
                             "(default: a DiT^DH-S template that needs --set data.root=DIR)"}),
             ("--subfolder", {"default": None, "metavar": "NAME",
                              "help": "folder of the model inside SOURCE (e.g. vae)"}),
             ("--revision", {"default": None, "metavar": "REV", "help": "Hub revision (branch, tag or commit)"}),
             ("--offline", {"action": "store_true", "help": "read the Hugging Face cache only (as HF_HUB_OFFLINE=1)"}),
             SET_OPTION,
         ])


def cmd_import(args: argparse.Namespace) -> int:
    """``rae import``: AutoencoderRAE -> ``OUT/checkpoints/`` (encoder, decoder, statistics) + ``OUT/imported.yaml``."""
    from rae_framework.interop.diffusers_import import import_diffusers_run

    path = import_diffusers_run(args.source, args.out, assembly=args.assembly, subfolder=args.subfolder,
                                revision=args.revision, offline=args.offline, overrides=args.overrides)
    print(f"imported {args.source} into {args.out}; train stage 2 with: rae run {path} --out {args.out}")
    return EXIT_OK
def _add_export(commands: Any) -> None:
    from rae_framework.interop.hub_export import add_export_arguments, cmd_export

    command = _add(commands, "export", cmd_export, "write a finished run as a folder for diffusers and the Hub: "
                   "vae/ (diffusers AutoencoderRAE), transformer/, scheduler/ and a model card README.md", [])
    add_export_arguments(command)


def _session() -> Any:
    from rae_framework.session import Session

    return Session()


def cmd_run(args: argparse.Namespace) -> int:
    """``rae run``: validate, then hand the assembly to the engine."""
    from pathlib import Path

    from rae_framework.assembly import load_assembly

    assembly = load_assembly(args.assembly, args.overrides, session=_session())
    run_assembly = _engine_runner()
    out_dir = Path(args.out) if args.out else Path("runs") / assembly.name
    result = run_assembly(assembly, out_dir, resume=not args.fresh, stages=args.stages)
    print(result.report(f"run '{assembly.name}' finished"))
    return EXIT_OK


def _engine_runner() -> Callable[..., Any]:
    try:
        from rae_framework.engine.runner import run_assembly
    except ImportError as error:
        if error.name != "rae_framework.engine.runner":
            raise
        raise RAEError("the run engine (rae_framework.engine.runner) is not available in this "
                       "installation; 'validate' works without it") from None
    return run_assembly


def cmd_sweep(args: argparse.Namespace) -> int:
    """``rae sweep``: every point of the grid as its own run under one parent, then the table."""
    from pathlib import Path

    from rae_framework.assembly import load_assembly
    from rae_framework.sweep import parse_grid, report, run_sweep

    axes = [parse_grid(spec) for spec in args.grid]
    session = _session()
    base = load_assembly(args.assembly, args.overrides, session=session)
    out_dir = Path(args.out) if args.out else Path("runs") / f"{base.name}-sweep"
    rows = run_sweep(args.assembly, axes, out_dir=out_dir, repeat_seeds=args.repeat_seeds, fixed=args.overrides,
                     reuse=[Path(folder) for folder in args.reuse], session=session)
    print(report(rows, out_dir, args.metrics.split(",") if args.metrics else None))
    print(f"sweep finished: {out_dir} (sweep.csv, sweep_summary.csv, sweep.png)")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """``rae validate``: every problem of the file at once, exit 2 if any."""
    from rae_framework.assembly import load_assembly

    assembly = load_assembly(args.assembly, args.overrides, session=_session())
    for warning in assembly.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.show:
        print(assembly.to_yaml(), end="")
    else:
        roles = ", ".join(f"{role}={spec.name}" for role, spec in assembly.components.items())
        print(f"{args.assembly}: ok ({assembly.name}: {roles or 'no components'})")
        print("\n".join(_stage_plan(assembly)))
    from pathlib import Path

    from rae_framework.data.cache_plan import latent_cache_report

    report = latent_cache_report(assembly, args.out or Path("runs") / assembly.name)
    if report:
        print(report, file=sys.stderr if args.show else sys.stdout)
    return EXIT_OK


def _stage_plan(assembly: Any) -> list[str]:
    """One line per enabled stage, in run order: what it reads and what it writes."""
    lines = ["stages, in order:" if assembly.stages.enabled() else "no stage is enabled"]
    for index, name in enumerate(assembly.stages.enabled(), start=1):
        spec = assembly.stages.spec(name)
        reads = [*spec.roles, *(f"{role}?" for role in spec.optional_roles if role in assembly.components),
                 *(f"<{stage}>" for stage in spec.reads if assembly.stages.is_enabled(stage))]
        lines.append(f"  {index}. {name}: reads {', '.join(reads) or 'nothing'}; "
                     f"writes {', '.join(spec.outputs.values()) or 'nothing'}")
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    """``rae list``: components with summaries and provenance, or ``list presets``."""
    session = _session()
    if args.what in ("presets", "recipe"):
        presets = session.presets.all(None if args.what == "presets" else args.what)
        if args.json:
            return _print_json([preset.as_dict() for preset in presets])
        rows = [(p.kind, p.name, p.component, p.summary) for p in presets]
        return _print_table(("KIND", "PRESET", "COMPONENT", "SUMMARY"), rows)
    entries = list(session.registry.entries(args.what))
    if args.json:
        return _print_json([entry.as_dict() for entry in entries])
    rows = [(e.kind, e.name, e.provenance.describe(), e.summary) for e in entries]
    return _print_table(("KIND", "NAME", "PROVIDED BY", "SUMMARY"), rows)


def cmd_describe(args: argparse.Namespace) -> int:
    """``rae describe KIND NAME``: parameters and presets of a component, or a recipe."""
    from rae_framework import describe

    session = _session()
    if args.kind == describe.RECIPE_KIND:
        print(describe.describe_recipe(session, args.name))
    else:
        print(describe.describe_component(session, args.kind, args.name))
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """``rae plugins``: every plugin's status, distribution, components and error. Every Config reference is
    resolved (torch-free); ``--check`` resolves the component classes too and exits 1 on any failure."""
    manager = _session().plugin_manager
    if args.check:
        from rae_framework import compat

        compat.ensure_torchvision_importable()
    manager.check_references(factories=args.check)
    if args.json:
        _print_json([report.as_dict() for report in manager.reports])
    else:
        rows = []
        for report in manager.reports:
            origin = f"{report.provenance.distribution or '-'} {report.provenance.version or ''}".strip()
            rows.append((report.name, report.status, origin, report.error or ", ".join(report.components) or "-"))
        _print_table(("PLUGIN", "STATUS", "DISTRIBUTION", "COMPONENTS / ERROR"), rows)
    return EXIT_FAILURE if args.check and manager.failures() else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """``rae schema``: JSON Schema of assemblies, with every registered component's params."""
    from rae_framework.describe import assembly_json_schema

    return _print_json(assembly_json_schema(_session()))


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return EXIT_OK


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> int:
    from rae_framework.describe import format_table

    print("\n".join(format_table(header, rows)))
    return EXIT_OK
