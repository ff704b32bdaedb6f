"""Argument helpers shared by the functional ops."""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch._prims_common import suggest_memory_format


def pair(op: str, name: str, value, allow_none: bool = False) -> list[int] | None:
    """An int or a 1/2-element sequence of ints as [h, w]; TypeError/ValueError naming `name`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got a bool")
    if isinstance(value, (numbers.Integral, torch.SymInt)):
        return [value, value]
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if len(items) not in (1, 2):
            raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {len(items)} values: {value!r}")
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (numbers.Integral, torch.SymInt)):
                raise TypeError(f"{op}: {name} must contain ints, got {value!r}")
        return [items[0], items[-1]]
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {type(value).__name__}: {value!r}")


def activation_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The layout our 4-D ops give their outputs: the input's, as torch.Tensor.suggest_memory_format."""
    if x.dim() != 4:
        return torch.contiguous_format
    return suggest_memory_format(x)


def empty_like_layout(x: torch.Tensor, shape: Sequence, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An empty tensor of `shape` on x's device, laid out as our kernels lay out their outputs."""
    fmt = activation_memory_format(x) if len(shape) == 4 else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or x.dtype, device=x.device, memory_format=fmt)
