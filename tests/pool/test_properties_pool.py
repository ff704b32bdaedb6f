"""Property-based tests (hypothesis) for the pooling ops: any valid draw of shape, layout, dtype
and keyword arguments matches the float64 reference; any invalid draw raises ValueError or
TypeError naming the problem, never crashes. Profiles: see tests/properties.py."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import bigmodel
from bigmodel import ops, reference

from properties import tensors_4d  # noqa: E402  (tests/ is on sys.path under pytest)


def _out(size, k, s, p, d, ceil):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _window_ok(size, k, s, p, d, ceil):
    out = _out(size, k, s, p, d, ceil)
    return out >= 1 and all(any(0 <= o * s - p + t * d < size for t in range(k)) for o in range(out))


pool_args = st.fixed_dictionaries({
    "kernel_size": st.tuples(st.integers(1, 5), st.integers(1, 5)),
    "stride": st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))),
    "dilation": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "ceil_mode": st.booleans(),
    "pad_frac": st.tuples(st.floats(0, 1), st.floats(0, 1)),
})


def _resolve(args, max_pool: bool):
    k = args["kernel_size"]
    s = args["stride"] or k
    d = args["dilation"] if max_pool else (1, 1)
    # torch's indices path allows padding up to half the kernel (its no-indices path up to half
    # the dilated kernel); the reference computes indices, so stay within the stricter rule.
    p = tuple(int(args["pad_frac"][i] * (k[i] // 2)) for i in range(2))
    return k, s, p, d


@given(x=tensors_4d(), args=pool_args, isa=st.sampled_from(bigmodel.available_isas()),
       return_indices=st.booleans())
def test_max_pool_property(x, args, isa, return_indices):
    k, s, p, d = _resolve(args, True)
    h, w = x.shape[-2:]
    assume(_window_ok(h, k[0], s[0], p[0], d[0], args["ceil_mode"]))
    assume(_window_ok(w, k[1], s[1], p[1], d[1], args["ceil_mode"]))
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=args["ceil_mode"])
    with bigmodel.use_isa(isa):
        xg = x.detach().requires_grad_(True)
        out = ops.max_pool2d(xg, **kw, return_indices=return_indices)
        y = out[0] if return_indices else out
        ref = reference.max_pool2d(x, **kw, return_indices=True)
        torch.testing.assert_close(y.double(), ref[0], rtol=0, atol=0, equal_nan=True)
        if return_indices:
            assert torch.equal(out[1], ref[1])
        if y.numel():
            gy = torch.randn_like(y)
            (gx,) = torch.autograd.grad(y, xg, gy)
            (rgx,) = reference.grads(reference.max_pool2d, [x], gy, **kw)
            torch.testing.assert_close(gx.double(), rgx, rtol=1e-5, atol=1e-5)


@given(x=tensors_4d(), args=pool_args, isa=st.sampled_from(bigmodel.available_isas()),
       count_include_pad=st.booleans(), divisor=st.one_of(st.none(), st.integers(1, 9)))
def test_avg_pool_property(x, args, isa, count_include_pad, divisor):
    k, s, p, _ = _resolve(args, False)
    h, w = x.shape[-2:]
    assume(_out(h, k[0], s[0], p[0], 1, args["ceil_mode"]) >= 1)
    assume(_out(w, k[1], s[1], p[1], 1, args["ceil_mode"]) >= 1)
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=args["ceil_mode"], count_include_pad=count_include_pad,
              divisor_override=divisor)
    with bigmodel.use_isa(isa):
        xg = x.detach().requires_grad_(True)
        y = ops.avg_pool2d(xg, **kw)
        torch.testing.assert_close(y.double(), reference.avg_pool2d(x, **kw), rtol=1e-5, atol=1e-5, equal_nan=True)
        if y.numel():
            gy = torch.randn_like(y)
            (gx,) = torch.autograd.grad(y, xg, gy)
            (rgx,) = reference.grads(reference.avg_pool2d, [x], gy, **kw)
            torch.testing.assert_close(gx.double(), rgx, rtol=1e-5, atol=1e-5)


# Invalid arguments: anything goes, and the only acceptable outcomes are a result equal to
# torch's (when torch accepts it too) or a ValueError / TypeError.
any_int = st.integers(-3, 12)
invalid_pool = st.fixed_dictionaries({
    "shape": st.lists(st.integers(0, 6), min_size=1, max_size=5),
    "kernel_size": st.one_of(any_int, st.tuples(any_int, any_int), st.just(2.5), st.just((1, 2, 3))),
    "stride": st.one_of(st.none(), any_int, st.tuples(any_int, any_int)),
    "padding": st.one_of(any_int, st.tuples(any_int, any_int)),
    "dilation": st.one_of(any_int, st.tuples(any_int, any_int)),
    "dtype": st.sampled_from([torch.float32, torch.float64, torch.int32, torch.float16, torch.bool]),
})


@given(a=invalid_pool, which=st.sampled_from(["max", "avg"]))
def test_bad_arguments_never_crash(a, which):
    x = torch.zeros(a["shape"], dtype=a["dtype"])
    try:
        if which == "max":
            ops.max_pool2d(x, a["kernel_size"], a["stride"], a["padding"], a["dilation"])
        else:
            ops.avg_pool2d(x, a["kernel_size"], a["stride"], a["padding"])
    except (ValueError, TypeError) as e:
        assert str(e), "error without a message"
