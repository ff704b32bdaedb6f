"""The one validation rule for benchmark shapes: every family's config checks itself when it is
made, raising ConfigError that names the field, whether it comes from benchmarks/suite.toml or
from a command-line --shape (the suite reader and the CLI both add where it came from)."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ConfigError


def positive_ints(value: Any, name: str, n: int | None = None, minimum: int = 1) -> tuple[int, ...]:
    ok = (isinstance(value, (list, tuple)) and len(value) > 0 and (n is None or len(value) == n)
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value))
    if not ok:
        count = f"{n} " if n is not None else ""
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ConfigError(f"{name}: expected a list of {count}{bound} integers, got {value!r}")
    return tuple(value)


def integer(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def choices(value: Any, allowed: Sequence, name: str) -> tuple:
    if not isinstance(value, (list, tuple)) or not value or any(v not in allowed for v in value):
        raise ConfigError(f"{name}: expected a non-empty list of {', '.join(map(repr, allowed))}, got {value!r}")
    return tuple(value)


def one_of(value: Any, allowed: Sequence, name: str) -> Any:
    if value not in allowed:
        raise ConfigError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return value
