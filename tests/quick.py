"""``with quickly(): ...`` checks that a failure path is fast, on a shared CI machine as on an idle one.

A wall-clock bound of one second fails under load that has nothing to do with the code (CI ran a rejection
that takes 0.2 s here in 1.4 s, beside a second xdist worker and its subprocesses). So the bound is split:

- the process's CPU time (all its threads, torch's pool included) is the work the code did: it is what a
  full model build, a parse of a huge document or a busy retry loop would inflate, and another process on
  the machine does not change it;
- the wall clock catches what costs no CPU (a blocking open, a sleeping retry, a network timeout), with a
  bound loose enough for a loaded machine and far below any real timeout.

A garbage collection of the test worker's heap (every module and tensor earlier tests left) is not work
of the code under test, which runs in a fresh, small process in real use: the heap is frozen meanwhile.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quickly(cpu_s: float = 1.0, wall_s: float = 8.0) -> Iterator[None]:
    gc.collect()
    gc.freeze()
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    try:
        yield
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
    finally:
        gc.unfreeze()
    assert cpu < cpu_s, f"took {cpu:.2f} s of CPU time (bound {cpu_s} s; {wall:.2f} s wall)"
    assert wall < wall_s, f"took {wall:.2f} s of wall time (bound {wall_s} s; {cpu:.2f} s CPU): it waited"
