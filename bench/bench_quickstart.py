"""Measure the quickstart as a newcomer runs it: wall time, CPU time, peak memory, per-stage times, metrics and
the independent classifier's per-class accuracy on the samples.

    python bench/bench_quickstart.py                      # the full quickstart into runs/bench-quickstart
    python bench/bench_quickstart.py --set stages.train_denoiser.steps=100

The run goes through the CLI in a child process (``python -m rae_framework run``) from the repository root,
so the figures include start-up and imports. CPU time and peak RSS come from ``getrusage`` of the child.
The 1-minute load average before and after is printed too: on a shared machine other processes inflate wall
time, and CPU time is then the steadier figure.
"""

from __future__ import annotations

import argparse
from datetime import datetime
import json
import os
from pathlib import Path
import resource
import subprocess
import sys
import time

REPOSITORY = Path(__file__).resolve().parents[1]
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def run_quickstart(out: Path, overrides: list[str]) -> tuple[float, float, float]:
    """Run the CLI; returns (wall seconds, CPU seconds, peak RSS in MiB) of the child."""
    command = [sys.executable, "-m", "rae_framework", "run", "examples/quickstart.yaml", "--out", str(out)]
    command += [item for pair in overrides for item in ("--set", pair)]
    print("command:", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPOSITORY, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def stage_seconds(log: Path) -> dict[str, float]:
    """Seconds between each stage's 'starting' and 'done' lines of the run's log.txt."""
    started: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    for line in log.read_text().splitlines():
        stamp, _, message = line[:19], line[19:20], line[20:]
        stage, _, event = message.partition(": ")
        if event.startswith("starting"):
            started[stage] = datetime.strptime(stamp, STAMP_FORMAT)
        elif event == "done" and stage in started:
            seconds[stage] = (datetime.strptime(stamp, STAMP_FORMAT) - started[stage]).total_seconds()
    return seconds


def classifier_report(samples: Path) -> str:
    """The independent classifier's table (examples/quickstart/classifier_check.py)."""
    sys.path.insert(0, str(REPOSITORY / "examples" / "quickstart"))
    from classifier_check import check, format_report

    return format_report(check(samples))


def main(argv: list[str] | None = None) -> None:
    """Run, then print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "runs" / "bench-quickstart")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="assembly override")
    args = parser.parse_args(argv)
    if (args.out / "stages").exists():
        raise SystemExit(f"{args.out} holds a finished run whose stages would be skipped; choose another --out")
    load_before = os.getloadavg()[0]
    wall, cpu, peak = run_quickstart(args.out, args.overrides)
    print(f"wall {wall:.0f} s, CPU (user + sys) {cpu:.0f} s, peak RSS {peak:.0f} MiB, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs")
    print("stages (s):", json.dumps(stage_seconds(args.out / "log.txt")))
    print("metrics:", (args.out / "metrics.json").read_text().strip().replace("\n", ""))
    print(classifier_report(args.out / "samples" / "samples.npz"))


if __name__ == "__main__":
    main()
