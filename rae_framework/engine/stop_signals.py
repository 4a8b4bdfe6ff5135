"""A scheduler's notice between the loops that save progress: stop cleanly instead of dying.

SLURM's SIGTERM (or the ``--signal`` users ask for) can arrive at any moment of a run, not only during a
training step or a sampling batch. While a run builds its models, computes the latent statistics, encodes the
latent cache or writes its records, there is no step to finish and save; the default action of these signals
kills the process, leaving its run-directory lock, half-built cache folders and trackers marked as crashed.

:func:`stop_on_signal` (entered by :func:`~rae_framework.engine.runner.run_assembly`) turns such a signal into
:class:`SignalStop`, an interrupt like ``KeyboardInterrupt`` (a ``BaseException``, so that no ``except
Exception`` on the way takes it for a failure: a tracker's fail-soft guard, a checkpoint check that would set a
good checkpoint aside as damaged). The ``with`` blocks on the way out remove their half-written files (atomic
writes, the latent cache's ``.building`` folder), the lock is released, the trackers are marked killed, and
``run_assembly`` raises :class:`~rae_framework.errors.PreemptedError` (:meth:`SignalStop.preempted`), the CLI's
exit 75, saying what the rerun continues from. The loops that do save
progress (training steps, sampling and evaluation batches) enter
:class:`~rae_framework.engine.training.PreemptionNotice`, which takes the signals over while they run and
gives them back here when they leave.

Only signals left at their default action are taken: a handler someone else installed is kept (submitit's
for SIGUSR2 and SIGTERM in a ``rae submit`` job, an application's own). After the first signal, later ones
are ignored until the block ends, so that the clean-up they interrupt is not itself interrupted.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rae_framework.errors import PreemptedError

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
RESUME_HINT = ("rerun the same command to continue from what is saved (finished stages, training checkpoints, "
               "finished sampling and evaluation batches)")


class SignalStop(BaseException):
    """A notice arrived outside the loops that save progress (``number``: the signal), ``where`` in the run."""

    def __init__(self, number: int, where: str = "before the first stage") -> None:
        super().__init__(number, where)
        self.number, self.where = number, where

    def during(self, stage: str) -> SignalStop:
        """The same stop, saying that it came in ``stage`` before the stage saved progress of its own."""
        return SignalStop(self.number, f"in stage '{stage}', before it saved progress of its own")

    def preempted(self) -> PreemptedError:
        """The :class:`PreemptedError` that reports it (exit 75 in the CLI)."""
        return PreemptedError(f"stopped by {signal.Signals(self.number).name} {self.where}; {RESUME_HINT}",
                              self.number)


@contextmanager
def stop_on_signal() -> Iterator[None]:
    """While entered (in the main thread), SIGTERM, SIGUSR1 and SIGUSR2 left at their default action raise
    :class:`SignalStop`; the previous handlers come back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    taken = [number for number in SIGNALS if signal.getsignal(number) == signal.SIG_DFL]
    for number in taken:
        signal.signal(number, _stop)
    try:
        yield
    finally:
        for number in taken:
            signal.signal(number, signal.SIG_DFL)


def _stop(number: int, frame: object) -> None:
    for other in SIGNALS:
        if signal.getsignal(other) is _stop:
            signal.signal(other, signal.SIG_IGN)  # the clean-up on the way out is not interrupted again
    raise SignalStop(number)
