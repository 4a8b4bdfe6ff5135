"""``rae sweep``: run an assembly over the cross product of a grid of overrides (and seeds), reusing the stages
that points share, and tabulate the metrics.

* Every point (one value per grid key, one seed) is a run directory ``<out>/<key>=<value>__...__seed=<s>``
  (short keys: the last dotted segment unless two keys share it; characters outside ``[A-Za-z0-9._=+-]``
  become ``-``). ``--repeat-seeds N`` runs seeds ``seed, seed + 1, ..., seed + N - 1`` of the assembly.
* Reuse: the engine skips a stage whose record (``stages/<stage>/stage_state.json``) holds the stage's
  current input hash (the config sections it reads + its upstream stages' output hashes). Before a point
  runs, each of its stages, in order, adopts the outputs and record of an already finished point whose
  record has the same input hash (hard links, else copies); so a sweep over denoiser settings trains the
  decoder once per seed, and downstream hashes chain through the adopted records.
  ``--reuse DIR`` adds the runs of another sweep (or a single run) as donors.
* Resume: rerunning the same command skips finished points (the engine's hashes) and continues interrupted
  ones from their checkpoints. Each point's time spent running stages accumulates in ``sweep_point.json``.
* Output: a table of the chosen metrics per point, mean ± sample std over seeds; ``sweep.csv`` (one row per
  run), ``sweep_summary.csv`` (one row per point) and ``sweep.png`` (one panel per metric, PIL-drawn).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rae_framework.errors import ConfigError

POINT_FILE = "sweep_point.json"
MAX_NAME = 120  # characters of a point's directory name
PER_CLASS_KEY = re.compile(r"_\d+(@|$)")  # class_accuracy_3@...: left out of the default table


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid key=v1,v2`` option: a dotted key and its YAML-typed values (as written)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: a value per grid key and a seed."""

    overrides: tuple[tuple[str, str], ...]  # (dotted key, YAML value as written)
    seed: int
    labels: tuple[str, ...]  # short key per override, for names and columns

    @property
    def setting(self) -> str:
        """The point's settings without the seed, e.g. ``shift_base=256``."""
        return "__".join(f"{label}={value}" for label, (_, value) in zip(self.labels, self.overrides)) or "base"

    @property
    def name(self) -> str:
        """Directory name: the settings and the seed, sanitised (long ones cut, with a hash of the whole)."""
        name = re.sub(r"[^A-Za-z0-9._=+-]+", "-", f"{self.setting}__seed={self.seed}").strip("-")
        if len(name) <= MAX_NAME:
            return name
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        return f"{name[:MAX_NAME - 30]}-{digest}__seed={self.seed}"

    def set_args(self) -> list[str]:
        """``key=value`` overrides for :func:`rae_framework.assembly.load_assembly`."""
        return [f"{key}={value}" for key, value in self.overrides] + [f"seed={self.seed}"]


@dataclass
class RunRow:
    """What one point produced."""

    point: SweepPoint
    wall_s: float
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def split_values(text: str) -> list[str]:
    """Split ``v1,v2`` at commas outside brackets, braces and quotes (``[64,96],[128,192]`` -> two values)."""
    values, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return values


def parse_grid(spec: str) -> GridAxis:
    """``key=v1,v2,...`` -> :class:`GridAxis`; a clear error for a malformed option."""
    key, sep, rest = spec.partition("=")
    values = split_values(rest) if sep else []
    if not key.strip() or not values or any(not value for value in values):
        raise ConfigError(f"--grid {spec}: expected KEY=V1,V2,... (a dotted key and comma-separated values)")
    return GridAxis(key.strip(), tuple(values))


def short_labels(keys: list[str]) -> tuple[str, ...]:
    """The last dotted segment of each key, or the whole key where two keys share that segment."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return tuple(tail if last.count(tail) == 1 else key for key, tail in zip(keys, last))


def expand(axes: list[GridAxis], seeds: list[int]) -> list[SweepPoint]:
    """The cross product of the axes' values, each with every seed (seeds vary fastest)."""
    keys = [axis.key for axis in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--grid: a key is given twice ({', '.join(keys)})")
    labels = short_labels(keys)
    return [SweepPoint(tuple(zip(keys, values)), seed, labels)
            for values in itertools.product(*(axis.values for axis in axes)) for seed in seeds]


# --- reuse of finished stages -------------------------------------------------------------------------------
def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy across file systems); replaces ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def find_donor(donors: list[Path], assembly, stage: str, key: str):
    """``(donor RunState, record)`` of a finished run whose ``stage`` record has input hash ``key``."""
    from rae_framework.engine.distributed import DistContext
    from rae_framework.engine.run_state import RunState

    for donor in donors:
        state = RunState(donor, assembly, DistContext())
        record = state.record(stage)
        if record is not None and record.input_hash == key and state.outputs_exist(record):
            return state, record
    return None


def adopt_shared_stages(out_dir: Path, assembly, donors: list[Path]) -> list[str]:
    """Give ``out_dir`` the outputs and records of every stage a donor finished with equal inputs, in stage
    order (each adopted record feeds the next stage's input hash); returns the adopted stages."""
    from rae_framework.engine.distributed import DistContext
    from rae_framework.engine.run_state import RunState

    state, adopted = RunState(out_dir, assembly, DistContext()), []
    for stage in assembly.stages.enabled():  # in run order
        key = state.input_hash(stage)
        own = state.record(stage)
        if own is not None and own.input_hash == key and state.outputs_exist(own):
            continue
        found = find_donor(donors, assembly, stage, key)
        if found is None:
            continue
        donor, record = found
        for name in record.outputs:
            link_or_copy(donor.out_dir / name, out_dir / name)
        state.write_record(record)
        adopted.append(stage)
    return adopted


# --- running -----------------------------------------------------------------------------------------------
def read_point_file(out_dir: Path) -> dict:
    """The point's bookkeeping (accumulated wall time, stages ever run or adopted)."""
    path = out_dir / POINT_FILE
    return json.loads(path.read_text()) if path.is_file() else {"wall_s": 0.0, "ran": [], "reused": []}


def run_point(point: SweepPoint, assembly, out_dir: Path, donors: list[Path]) -> RunRow:
    """Adopt shared stages, run the rest through the engine, book the time spent; all under the point's run
    directory lock (a second sweep over the same point stops at once)."""
    from rae_framework.engine.distributed import init_distributed
    from rae_framework.engine.run_lock import hold_run_lock
    from rae_framework.engine.runner import run_assembly

    context = init_distributed()
    with hold_run_lock(out_dir, context):
        adopted = adopt_shared_stages(out_dir, assembly, donors)
        start = time.perf_counter()
        result = run_assembly(assembly, out_dir, resume=True, context=context, lock_held=True)
        booked = read_point_file(out_dir)
        booked["wall_s"] += time.perf_counter() - start if result.ran else 0.0
        booked["ran"] = sorted(set(booked["ran"]) | set(result.ran))
        booked["reused"] = sorted(set(booked["reused"]) | set(adopted))
        booked.update(point=point.setting, seed=point.seed, overrides=dict(point.overrides))
        (out_dir / POINT_FILE).write_text(json.dumps(booked, indent=2, sort_keys=True) + "\n")
    return RunRow(point, booked["wall_s"], booked["ran"], booked["reused"], dict(result.metrics))


def load_points(path: str, points: list[SweepPoint], fixed: list[str], session) -> list:
    """Validate every point's assembly before anything runs (all errors of the first bad point)."""
    from rae_framework.assembly import load_assembly

    return [load_assembly(path, [*fixed, *point.set_args()], session=session) for point in points]


def seeds_of(path: str, fixed: list[str], repeat: int, session) -> list[int]:
    """``repeat`` consecutive seeds from the assembly's own."""
    from rae_framework.assembly import load_assembly

    if repeat < 1:
        raise ConfigError(f"--repeat-seeds {repeat}: must be at least 1")
    base = load_assembly(path, fixed, session=session).seed
    return [base + index for index in range(repeat)]


def run_directories(folders: list[Path]) -> list[Path]:
    """Run directories (folders with ``stages/``) in ``folders``: a run itself, a sweep's parent or a parent of
    sweeps (two levels down)."""
    runs = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ConfigError(f"--reuse {folder}: not a folder")
        for pattern in ("stages", "*/stages", "*/*/stages"):
            runs.extend(sorted(path.parent for path in folder.glob(pattern) if path.is_dir()))
    return runs


def run_sweep(path: str, axes: list[GridAxis], *, out_dir: Path, repeat_seeds: int = 1,
              fixed: list[str] = (), reuse: list[Path] = (), session=None, echo=print) -> list[RunRow]:
    """Run every point of the grid under ``out_dir`` (see the module docstring); returns one row per run.
    ``reuse``: further run directories (or sweep parents) whose finished stages points may adopt."""
    from rae_framework.session import Session

    session = session or Session()
    points = expand(axes, seeds_of(path, list(fixed), repeat_seeds, session))
    assemblies = load_points(path, points, list(fixed), session)
    rows, finished = [], run_directories(list(reuse))
    for index, (point, assembly) in enumerate(zip(points, assemblies), start=1):
        row = run_point(point, assembly, out_dir / point.name, finished)
        finished.append(out_dir / point.name)
        echo(f"[{index}/{len(points)}] {point.name}: ran {', '.join(row.ran) or 'nothing'}; reused "
             f"{', '.join(row.reused) or 'nothing'}; {row.wall_s:.0f} s")
        rows.append(row)
    return rows


# --- reporting ---------------------------------------------------------------------------------------------
def chosen_metrics(rows: list[RunRow], wanted: list[str] | None) -> list[str]:
    """Metric keys to report: ``wanted`` (a key, or a key before its ``@extractor`` label) or, by default,
    every key except per-class ones."""
    keys = sorted({key for row in rows for key in row.metrics})
    if not wanted:
        return [key for key in keys if not PER_CLASS_KEY.search(key)]
    chosen = []
    for name in wanted:
        matches = [key for key in keys if key == name or key.split("@", 1)[0] == name]
        if not matches:
            raise ConfigError(f"--metrics {name}: no such metric in the runs' metrics.json "
                              f"(have: {', '.join(keys) or 'none'})")
        chosen.extend(match for match in matches if match not in chosen)
    return chosen


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


@dataclass
class Summary:
    """One point over its seeds."""

    setting: str
    runs: int
    wall_s: float  # mean over seeds
    stats: dict[str, tuple[float, float]]  # metric -> (mean, std)


def summarise(rows: list[RunRow], metrics: list[str]) -> list[Summary]:
    """Group runs by setting (in grid order) and average over seeds."""
    groups: dict[str, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row.point.setting, []).append(row)
    summaries = []
    for setting, group in groups.items():
        stats = {key: mean_std([row.metrics[key] for row in group if key in row.metrics])
                 for key in metrics if any(key in row.metrics for row in group)}
        summaries.append(Summary(setting, len(group), mean_std([row.wall_s for row in group])[0], stats))
    return summaries


def _cell(stat: tuple[float, float] | None, runs: int) -> str:
    if stat is None:
        return "-"
    return f"{stat[0]:.4g}" if runs < 2 else f"{stat[0]:.4g} ± {stat[1]:.2g}"


def format_table(summaries: list[Summary], metrics: list[str]) -> str:
    """A Markdown table: setting, seeds, each metric as ``mean ± std`` (the mean alone for one seed), mean wall
    time per run."""
    header = ["setting", "seeds", *metrics, "wall s/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for summary in summaries:
        cells = [_cell(summary.stats.get(key), summary.runs) for key in metrics]
        lines.append("| " + " | ".join([summary.setting, str(summary.runs), *cells, f"{summary.wall_s:.0f}"]) + " |")
    return "\n".join(lines)


def write_csvs(out_dir: Path, rows: list[RunRow], summaries: list[Summary], metrics: list[str]) -> None:
    """``sweep.csv`` (a row per run, every metric) and ``sweep_summary.csv`` (a row per point)."""
    every = sorted({key for row in rows for key in row.metrics})
    labels = list(rows[0].point.labels) if rows else []
    with (out_dir / "sweep.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", *labels, "seed", "wall_s", "ran", "reused", *every])
        for row in rows:
            writer.writerow([row.point.name, *(value for _, value in row.point.overrides), row.point.seed,
                             f"{row.wall_s:.1f}", " ".join(row.ran), " ".join(row.reused),
                             *(row.metrics.get(key, "") for key in every)])
    with (out_dir / "sweep_summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["setting", "seeds", "wall_s_mean", *(f"{key}{part}" for key in metrics
                                                              for part in ("_mean", "_std"))])
        for summary in summaries:
            writer.writerow([summary.setting, summary.runs, f"{summary.wall_s:.1f}",
                             *(value for key in metrics for value in summary.stats.get(key, ("", "")))])


def report(rows: list[RunRow], out_dir: Path, wanted: list[str] | None) -> str:
    """Write the CSVs and the plot; return the table."""
    from rae_framework.sweep_plot import plot_summaries

    metrics = chosen_metrics(rows, wanted)
    summaries = summarise(rows, metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csvs(out_dir, rows, summaries, metrics)
    plot_summaries(summaries, rows, metrics, out_dir / "sweep.png")
    return format_table(summaries, metrics)
