"""Exceptions for problems a user can fix (bad files, options, checkpoints). The command line
prints their message without a traceback; each message names the file or option at fault."""

from __future__ import annotations


class BigmodelError(Exception):
    """Base class: something about the user's input, files or run that they can fix."""


class ConfigError(BigmodelError, ValueError):
    """A bad option or config-file value."""


class DataError(BigmodelError, ValueError):
    """A missing, corrupt, empty or mis-shaped data file; the message names the file."""


class DownloadError(BigmodelError, OSError):
    """A download that failed (offline, HTTP error, checksum mismatch)."""


class CheckpointError(BigmodelError, ValueError):
    """A missing, truncated, foreign or incompatible checkpoint file."""


class NonFiniteLossError(BigmodelError, ArithmeticError):
    """The training loss became NaN or infinite; the run stopped, keeping the last good checkpoint."""
