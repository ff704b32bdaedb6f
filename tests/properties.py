"""Shared hypothesis strategies and profiles for the property-based tests.

Profiles (HYPOTHESIS_PROFILE=...): "ci" (default, bounded: 40 derandomized examples per
property, suitable for every run) and "long" (3,000 examples per property with fresh randomness;
run it before a release:
`HYPOTHESIS_PROFILE=long python -m pytest tests/*/test_properties_*.py --hypothesis-show-statistics`)."""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("long", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@st.composite
def tensors_4d(draw, max_batch=3, max_channels=20, max_hw=24, dtypes=(torch.float32, torch.float64)):
    """A 4-D float tensor in any of the layouts the ops accept: NCHW, channels_last, or a
    non-contiguous view (sliced along W or H), with occasional NaN / ±inf / exact ties."""
    n = draw(st.integers(0, max_batch))
    c = draw(st.integers(1, max_channels))
    h = draw(st.integers(1, max_hw))
    w = draw(st.integers(1, max_hw))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    layout = draw(st.sampled_from(["nchw", "channels_last", "sliced_w", "sliced_h"]))
    base = torch.randn(n, c, h + 3, 2 * w, generator=g, dtype=dtype)
    special = draw(st.sampled_from(["none", "none", "ties", "nan", "inf"]))
    if special != "none" and base.numel():
        mask = torch.rand(base.shape, generator=g) < 0.1
        base = base.masked_fill(mask, {"ties": 0.0, "nan": float("nan"), "inf": float("-inf")}[special])
    if layout == "sliced_w":
        return base[:, :, :h, ::2]
    if layout == "sliced_h":
        return base[:, :, 1:h + 1, :w]
    x = base[:, :, :h, :w].contiguous()
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


LAYOUTS = ("contiguous", "transposed", "strided", "offset")


def make_layout(shape, dtype, layout: str, g: torch.Generator, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """A tensor of `shape` with random values in [lo, hi) laid out as `layout`:
    contiguous; transposed (the last two dimensions swapped in memory); strided (every other
    element of the last dimension); offset (a view that starts inside a larger buffer)."""
    shape = tuple(shape)

    def rand(s):
        return torch.rand(s, generator=g, dtype=torch.float64).mul_(hi - lo).add_(lo).to(dtype)

    if layout == "transposed" and len(shape) >= 2:
        s = shape[:-2] + (shape[-1], shape[-2])
        return rand(s).transpose(-1, -2)
    if layout == "strided" and len(shape) >= 1:
        s = shape[:-1] + (2 * shape[-1],)
        return rand(s)[..., ::2]
    if layout == "offset" and len(shape) >= 1:
        s = shape[:-1] + (shape[-1] + 3,)
        return rand(s)[..., 3:]
    return rand(shape)


def f32_or_f64(dtype, f32: dict, f64: dict) -> dict:
    return f32 if dtype == torch.float32 else f64


@st.composite
def seeds(draw):
    return torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
