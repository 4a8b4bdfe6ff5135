"""One writer per run directory: ``<run_dir>/.rae.lock``, held by the process that writes the directory.

* Taking it: ``os.open(O_CREAT | O_EXCL)``, atomic on a local disk and on NFSv3+ and Lustre (where ``flock``
  may be a no-op or local to one client), so of two processes only one creates the file. It then holds, as
  JSON, who holds it: host, pid, start time (UTC), command line, a random token, and where the pid means
  something (:func:`machine_identity`: the kernel's boot id and the pid namespace) with the process's own
  start time (against a reused pid). A refused process has written nothing into the directory.
* Heartbeat: a daemon thread refreshes the file's mtime every ``RAE_LOCK_HEARTBEAT_S`` seconds (default 30)
  through the descriptor it keeps open, so it never touches a lock file that is no longer its own.
* A lock whose holder is gone is taken over, with a console line saying whose and why: on the same machine
  when the holder's process no longer runs (exact, at once); from another machine when the heartbeat is
  older than ``RAE_LOCK_STALE_S`` (default 300), which compares the file server's mtime with the local clock.
  Breaking a stale lock is serialised by a marker created with ``O_EXCL`` (named after that lock's token);
  the breaker unlinks the lock only if it is still the one judged stale, then creates its own with ``O_EXCL``
  like anyone else: of any number of contenders exactly one ends up holding the lock.
* Under ``torchrun`` rank 0 holds the lock for the job (:func:`hold_run_lock`); the outcome is broadcast so
  that every rank raises together. Other ranks never touch the file.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rae_framework.errors import ConfigError, RAEError, RunDirectoryLockedError
from rae_framework.files import full_disk_reported, make_folder

LOCK_NAME = ".rae.lock"
HEARTBEAT_ENV, STALE_ENV = "RAE_LOCK_HEARTBEAT_S", "RAE_LOCK_STALE_S"
DEFAULT_HEARTBEAT_S, DEFAULT_STALE_S = 30.0, 300.0
ATTEMPTS = 5  # looks at the lock before giving up while others take it, release it or break it
RETRY_S = 0.05


@dataclass(frozen=True)
class LockTimes:
    """How often a holder refreshes its heartbeat, and how old a heartbeat makes a lock stale."""

    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    stale_s: float = DEFAULT_STALE_S

    @classmethod
    def from_environment(cls, environ=os.environ) -> LockTimes:
        """``RAE_LOCK_HEARTBEAT_S`` and ``RAE_LOCK_STALE_S`` (seconds); the stale age must exceed two beats."""
        heartbeat = _seconds_from(environ, HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)
        stale = _seconds_from(environ, STALE_ENV, DEFAULT_STALE_S)
        if stale <= 2 * heartbeat:
            raise ConfigError(f"{STALE_ENV}={stale:g} must be more than twice {HEARTBEAT_ENV}={heartbeat:g}: "
                              "a live holder's lock would look stale between two heartbeats")
        return cls(heartbeat, stale)


def _seconds_from(environ, name: str, default: float) -> float:
    text = environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={text!r}: expected a positive number of seconds")
    return value


# --- who holds a lock --------------------------------------------------------------------------------------
def machine_identity() -> str:
    """Where a pid names one process: the kernel's boot id and this process's pid namespace (Linux), else
    the host name. Containers on one node differ by namespace; a rebooted node by boot id."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return socket.gethostname()


def slurm_incarnation(environ=os.environ) -> tuple[str | None, int]:
    """``(SLURM_JOB_ID, SLURM_RESTART_COUNT)`` of this process; ``(None, 0)`` outside SLURM."""
    job = environ.get("SLURM_JOB_ID") or None
    try:
        restart = int(environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        restart = 0
    return job, restart


def _proc_stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after "pid (comm)" (state first), or None where ``/proc`` does not
    tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks after boot (``/proc/<pid>/stat`` field 22), or None
    where ``/proc`` does not tell; it tells a reused pid from the process that held a lock."""
    fields = _proc_stat_fields(pid)
    return None if fields is None else int(fields[19])  # state is field 3, starttime field 22


def process_has_exited(pid: int) -> bool:
    """Whether ``pid`` is a zombie (``Z``) or dead (``X``): it has ended, but its parent has not reaped it
    yet. Where the parent died too (a killed torchrun), the worker is reparented to pid 1, and a container's
    pid 1 may never reap it, so the zombie would otherwise hold its lock for ever."""
    fields = _proc_stat_fields(pid)
    return fields is not None and fields[0] in ("Z", "X")


@dataclass(frozen=True)
class Holder:
    """What a lock file says about the process that holds it."""

    host: str
    pid: int
    started: str  # ISO 8601, UTC
    command: list[str]
    token: str  # random: tells this holding of the lock from any other
    machine: str  # see machine_identity
    process_start: int | None  # see process_start_ticks
    slurm_job: str | None = None  # SLURM_JOB_ID: a requeued job keeps its id ...
    slurm_restart: int = 0  # ... and SLURM_RESTART_COUNT grows by one per requeue

    @classmethod
    def this_process(cls, environ=os.environ) -> Holder:
        """The holder record of the calling process."""
        pid = os.getpid()
        job, restart = slurm_incarnation(environ)
        return cls(socket.gethostname(), pid, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   list(sys.argv), uuid.uuid4().hex, machine_identity(), process_start_ticks(pid), job, restart)

    def is_earlier_run_of(self, job: str | None, restart: int) -> bool:
        """Whether this holder was an earlier run of the SLURM job ``job`` (now at restart ``restart``):
        SLURM starts a requeued job only after the earlier run has ended, so its lock is certainly stale,
        even when it died too hard to remove it and its heartbeat is still young."""
        return job is not None and self.slurm_job == job and self.slurm_restart < restart

    @classmethod
    def from_text(cls, text: str) -> Holder | None:
        """The holder in a lock file's text; None when the text is not a complete record (being written)."""
        try:
            holder = cls(**json.loads(text))
        except (ValueError, TypeError):
            return None
        return holder if isinstance(holder.pid, int) and holder.pid > 0 else None

    def to_text(self) -> str:
        """The lock file's content."""
        return json.dumps(asdict(self), sort_keys=True) + "\n"

    def describe(self) -> str:
        """``host h, pid 12, started 2026-...Z, command: rae run a.yaml``."""
        return f"host {self.host}, pid {self.pid}, started {self.started}, command: {' '.join(self.command)}"

    def gone(self) -> bool | None:
        """Whether the process is known to have ended: None where its pid means nothing here (another
        machine or pid namespace), else whether no process with its pid and start time runs."""
        if self.machine != machine_identity():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process runs with that pid
            pass
        if process_has_exited(self.pid):
            return True
        start = process_start_ticks(self.pid)
        return self.process_start is not None and start is not None and start != self.process_start


@dataclass(frozen=True)
class SeenLock:
    """One look at an existing lock file: its holder (None while unreadable) and its heartbeat's age."""

    holder: Holder | None
    age_s: float
    identity: str  # the holder's token, or the file's inode and mtime while unreadable

    def stale_reason(self, times: LockTimes, environ=os.environ) -> str | None:
        """Why the lock may be taken over, or None while its holder may still run."""
        gone = None if self.holder is None else self.holder.gone()
        if gone:
            return f"its process {self.holder.pid} no longer runs on {self.holder.host}"
        job, restart = slurm_incarnation(environ)
        if self.holder is not None and self.holder.is_earlier_run_of(job, restart):
            return (f"it was held by the run of SLURM job {job} before its requeue "
                    f"(restart {self.holder.slurm_restart}; this is restart {restart})")
        if gone is None and self.age_s > times.stale_s:
            return f"its heartbeat stopped {self.age_s:.0f} s ago ({STALE_ENV}={times.stale_s:g})"
        return None

    def who(self) -> str:
        """The holder's description, or what is known while its record is unreadable."""
        if self.holder is None:
            return "a process that has not finished writing the lock file (or left it empty)"
        return self.holder.describe()


def look(path: Path) -> SeenLock | None:
    """The lock at ``path`` as it is now; None when there is none (released meanwhile)."""
    try:
        with path.open(encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            holder = Holder.from_text(handle.read())
    except FileNotFoundError:
        return None
    identity = holder.token if holder else f"ino{info.st_ino}-{info.st_mtime_ns}"
    return SeenLock(holder, max(0.0, time.time() - info.st_mtime), identity)


# --- taking, keeping and giving back a lock ----------------------------------------------------------------
def _create(path: Path, holder: Holder) -> int | None:
    """The descriptor of a new lock file holding ``holder``, or None if a lock file exists."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    try:
        with full_disk_reported(path.parent, path.name):
            os.write(descriptor, holder.to_text().encode())
            os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        path.unlink(missing_ok=True)
        raise
    return descriptor


def _break(path: Path, seen: SeenLock) -> bool:
    """Remove the stale lock ``seen`` if it is still the lock at ``path``; one contender at a time does this
    for a given stale lock (the marker), so none removes the lock a faster one has just taken."""
    marker = path.with_name(f"{path.name}.break-{seen.identity}")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False  # another process is breaking it right now
    try:
        now = look(path)
        if now is None or now.identity != seen.identity:
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        marker.unlink(missing_ok=True)


def _refusal(path: Path, seen: SeenLock, times: LockTimes) -> RunDirectoryLockedError:
    return RunDirectoryLockedError(
        f"run directory {path.parent} is in use by another process (lock file {path}):\n"
        f"  held by {seen.who()}; last heartbeat {seen.age_s:.0f} s ago\n"
        f"Nothing was written into it. Wait for that run to finish, or use another directory. The lock is taken "
        f"over by itself once its process has ended (same machine) or its heartbeat is older than {STALE_ENV}="
        f"{times.stale_s:g} s (another machine); if you are sure the holder is gone, delete {path}")


class RunLock:
    """The lock of one run directory (or of another shared folder, such as a latent cache being built), held
    by this process; a heartbeat thread keeps it fresh until :meth:`release`. Use :meth:`acquire` (or
    :func:`hold_run_lock`) to take a run directory's, :meth:`take` for any other."""

    def __init__(self, path: Path, holder: Holder, descriptor: int, times: LockTimes, what: str) -> None:
        self.path, self.holder, self.times, self.what = path, holder, times, what
        self._descriptor = descriptor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"rae-lock-heartbeat {path}", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, run_dir: str | Path, times: LockTimes | None = None) -> RunLock:
        """Take the lock of ``run_dir`` (creating the folder if needed), taking over a stale one; raises
        :class:`RunDirectoryLockedError` naming the holder when it is held, without writing anything."""
        times = times or LockTimes.from_environment()
        path = Path(run_dir) / LOCK_NAME
        make_run_directory(path.parent)
        taken = cls.take(path, times, f"run directory {path.parent}")
        if isinstance(taken, SeenLock):
            raise _refusal(path, taken, times)
        return taken

    @classmethod
    def take(cls, path: Path, times: LockTimes, what: str) -> RunLock | SeenLock:
        """The lock file ``path`` (of ``what``, for the console) taken by this process, a stale one taken
        over with a warning; or, while a live holder keeps it, that lock as seen."""
        holder, taken_over, seen = Holder.this_process(), None, None
        for _ in range(ATTEMPTS):
            descriptor = _create(path, holder)
            if descriptor is not None:
                if taken_over is not None:
                    print(f"warning: took over the lock of {what} from {taken_over[0]}: {taken_over[1]}",
                          file=sys.stderr, flush=True)
                return cls(path, holder, descriptor, times, what)
            seen = look(path)
            if seen is None:
                continue  # released between our two looks
            reason = seen.stale_reason(times)
            if reason is None:
                return seen
            if _break(path, seen):
                taken_over = (seen.who(), reason)
            else:
                time.sleep(RETRY_S)
        raise RunDirectoryLockedError(
            f"{what}: could not take its lock {path} after {ATTEMPTS} tries: other processes are taking, "
            f"releasing or breaking it (last seen: {seen.who() if seen else 'none'}). If a "
            f"'{path.name}.break-*' file stays there with no process running, delete it and {path}")

    def held(self) -> bool:
        """Whether the lock file at :attr:`path` is still the one this process created."""
        try:
            now, ours = os.stat(self.path), os.fstat(self._descriptor)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino)

    def _beat(self) -> None:
        while not self._stop.wait(self.times.heartbeat_s):
            if not self.held():
                print(f"warning: lost the lock of {self.what}: {self.path} was removed or "
                      f"taken over (this process's heartbeat stalled for more than {STALE_ENV}="
                      f"{self.times.stale_s:g} s?); two processes may now write into it", file=sys.stderr,
                      flush=True)
                return
            with suppress(OSError):  # a file server's hiccup: the next beat tries again
                os.utime(self._descriptor)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        self._thread.join()
        ours = self.held()
        os.close(self._descriptor)  # before the unlink: NFS would keep an open, unlinked file as .nfsXXXX
        if ours:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


SHARED_ERRORS = (RunDirectoryLockedError, ConfigError)  # re-raised as such on the other ranks; others as RAEError


def make_run_directory(run_dir: Path) -> None:
    """Create ``run_dir`` (and its parents); a file where a folder must be, or a folder that cannot be made, is
    a :class:`ConfigError` naming it."""
    make_folder(run_dir, "run directory", "choose another --out")


@contextmanager
def hold_run_lock(run_dir: str | Path, context=None) -> Iterator[RunLock | None]:
    """Hold ``run_dir``'s lock for the block: taken by rank 0 of ``context`` (a
    :class:`~rae_framework.engine.distributed.DistContext`; None = one process), which yields it (other ranks
    yield None). When rank 0 cannot take it, every rank raises the same error, so no rank waits for another."""
    main = context is None or context.is_main
    lock, failure = None, None
    if main:
        try:
            lock = RunLock.acquire(run_dir)
        except (RAEError, OSError) as error:
            failure = error
    if context is not None and context.enabled:
        outcome = context.broadcast_object(None if failure is None else (type(failure).__name__, str(failure)))
        if not main and outcome is not None:
            failure = next((kind for kind in SHARED_ERRORS if kind.__name__ == outcome[0]), RAEError)(outcome[1])
    if failure is not None:
        raise failure
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
