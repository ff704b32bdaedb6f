"""Choosing the CPU code path (AVX-512, AVX2 or generic) at run time."""

from __future__ import annotations

import contextlib
from typing import Iterator

from . import _C


def active_isa() -> str:
    """The CPU path the kernels use now.

    Raises ValueError if BIGMODEL_ISA names a path that is unknown or that this CPU cannot run.
    """
    return _C.active_isa()


def available_isas() -> list[str]:
    """Paths compiled in and runnable on this CPU, best first."""
    return list(_C.isa_available())


def set_isa(name: str) -> None:
    """Force a CPU path for the whole process ('avx512', 'avx2' or 'generic')."""
    _C.set_isa(name)


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Run the body on one CPU path, then restore the previous one."""
    previous = active_isa()
    set_isa(name)
    try:
        yield
    finally:
        set_isa(previous)
