"""The framework's exception hierarchy: every user-facing failure is an :class:`RAEError`."""

from __future__ import annotations


class RAEError(Exception):
    """Base class of every error this framework raises on purpose."""


class ConfigError(RAEError):
    """Invalid input: an assembly, a parameter, a preset. The CLI exits with code 2."""


class UnknownComponentError(ConfigError, LookupError):
    """A kind or component name that no plugin registers."""


class DuplicateComponentError(RAEError):
    """Two plugins register the same kind and name."""


class PluginLoadError(RAEError):
    """A plugin failed to import or to register its components."""


class WeightsNotFoundError(RAEError):
    """Pretrained weights are not available locally (and the network is off or not allowed)."""


class TrainingDivergedError(RAEError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class PreemptedError(RAEError):
    """SIGTERM, SIGUSR1 or SIGUSR2 (a scheduler's notice) arrived: the run saved its progress and stopped; rerun
    the same command to resume (the CLI exits with ``EXIT_PREEMPTED``). ``signal`` is the number this process
    received, None when only another rank received a notice."""

    def __init__(self, message: str, signal: int | None = None) -> None:
        super().__init__(message)
        self.signal = signal


class RunDirectoryLockedError(RAEError):
    """Another process holds the run directory's lock (``.rae.lock``); nothing was written into it. The CLI
    exits with code 2."""


class DiskFullError(RAEError):
    """A write ran out of disk space (ENOSPC/EDQUOT); the files written before it are intact."""


class CheckpointDamagedError(RAEError):
    """A checkpoint's file is missing, truncated or corrupted (its size or sha256 differs from the manifest, or,
    in a checkpoint without a manifest, it does not parse); the CLI exits with code 1."""


class ConfigIssue:
    """One problem in an input file: where (``file:line``), what (dotted path), why, and the value."""

    def __init__(self, location: str, path: str, message: str, *, value: object = None,
                 show_value: bool = True) -> None:
        self.location = location
        self.path = path
        self.message = message
        self.value = value
        self.show_value = show_value

    def __str__(self) -> str:
        got = f" (got {self.value!r})" if self.show_value else ""
        return f"{self.location}: {self.path or '<root>'}: {self.message}{got}"


class AssemblyError(ConfigError):
    """Every problem found in one assembly file, reported together (``.issues``)."""

    def __init__(self, origin: str, issues: list[ConfigIssue]) -> None:
        self.origin = origin
        self.issues = list(issues)
        count = f"{len(self.issues)} error{'s' if len(self.issues) != 1 else ''}"
        super().__init__(f"{origin}: {count}\n" + "\n".join(f"  {issue}" for issue in self.issues))
