"""A scheduler's notice outside the loops that save progress stops the run as an interrupt (exit 75), instead
of the signal's default action killing the process with its lock and half-built files left behind."""

from __future__ import annotations

import os
import signal

import pytest

from rae_framework.engine.stop_signals import SignalStop, stop_on_signal
from rae_framework.engine.training import PreemptionNotice
from rae_framework.errors import PreemptedError


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2])
def test_a_signal_in_the_block_raises_and_the_default_comes_back(number):
    assert signal.getsignal(number) == signal.SIG_DFL
    with pytest.raises(SignalStop) as stopped, stop_on_signal():
        os.kill(os.getpid(), number)
    assert stopped.value.number == number and signal.getsignal(number) == signal.SIG_DFL
    preempted = stopped.value.during("latent_stats").preempted()
    assert isinstance(preempted, PreemptedError) and preempted.signal == number
    assert f"stopped by {signal.Signals(number).name} in stage 'latent_stats'" in str(preempted)


def test_no_except_exception_takes_it_for_a_failure():
    with pytest.raises(SignalStop), stop_on_signal():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Exception:  # noqa: BLE001 - what a fail-soft guard or a checkpoint check does
            pytest.fail("a notice was caught as an ordinary failure")


def test_later_signals_do_not_interrupt_the_clean_up():
    cleaned = []
    with pytest.raises(SignalStop), stop_on_signal():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # ignored: the clean-up runs to its end
            cleaned.append(True)
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_handler_someone_installed_is_kept():
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: seen.append(number))  # e.g. submitit's
    try:
        with stop_on_signal():
            os.kill(os.getpid(), signal.SIGUSR2)
        assert seen == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_loop_that_saves_progress_takes_the_signal_over_and_gives_it_back():
    with pytest.raises(SignalStop), stop_on_signal():
        with PreemptionNotice() as notice:
            os.kill(os.getpid(), signal.SIGTERM)  # noted: the loop finishes its step and saves it
        assert notice.received == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # between loops again: stops
