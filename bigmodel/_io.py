"""File helpers shared by the library.

Atomic writes: write a temporary file in the destination folder, fsync, then rename over the
destination, so a reader (or a crash) never sees a half-written file. Reads of a user's text or
TOML file that fail with the caller's error type, naming the file and what it was for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary binary file beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a plain open()'s mode
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, writer: Callable[[BinaryIO], None]) -> None:
    """Atomically write `path` with `writer(file)` (e.g. ``lambda f: torch.save(obj, f)``)."""
    with atomic_open(path) as f:
        writer(f)


def tomllib():
    """The TOML reader: the standard library's tomllib (Python 3.11+), else the tomli package it
    came from (a dependency on 3.10 only)."""
    try:
        import tomllib as toml
    except ModuleNotFoundError:  # Python 3.10
        import tomli as toml
    return toml


def read_text(path: str | os.PathLike, what: str, error: type[Exception]) -> str:
    """The UTF-8 text of `path`. A missing, unreadable or non-UTF-8 file raises `error`, e.g.
    "c.yaml: config file not found" for what="config file"."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} ({exc})") from None


def parse_toml(text: str, path: str | os.PathLike, error: type[Exception]) -> dict[str, Any]:
    """The table in `text` (read from `path`); invalid TOML raises `error` naming the file."""
    toml = tomllib()
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML ({exc})") from None
