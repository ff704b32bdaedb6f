"""Property-based tests (hypothesis) for conv2d: any valid draw of input shape (N = 0 included,
batched or unbatched), layout (NCHW, channels_last, non-contiguous views), dtype, groups (incl.
depthwise), stride, padding (int, pair, 'same', 'valid'), dilation, bias and ISA path matches
bigmodel/reference.py in the forward and in all three gradients; any invalid draw raises
ValueError / TypeError naming the argument, never a crash. Profiles: see tests/properties.py."""

from __future__ import annotations

import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import bigmodel
from bigmodel import ops, reference

from properties import f32_or_f64, tensors_4d  # noqa: E402

F32 = dict(rtol=1e-4, atol=2e-4)
F64 = dict(rtol=1e-9, atol=1e-9)


def _out(size, k, s, p0, p1, d):
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


conv_args = st.fixed_dictionaries({
    "kernel": st.tuples(st.integers(1, 4), st.integers(1, 4)),
    "stride": st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    "dilation": st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    "padding": st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
                         st.sampled_from(["same", "valid"])),
    "groups_pick": st.integers(0, 100),
    "out_per_group": st.integers(1, 5),
    "depthwise": st.booleans(),
    "bias": st.booleans(),
    "unbatched": st.booleans(),
})


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _resolve(x, a):
    c = x.shape[1]
    if a["depthwise"]:
        groups, oc = c, c
    else:
        divisors = [g for g in range(1, c + 1) if c % g == 0]
        groups = divisors[a["groups_pick"] % len(divisors)]
        oc = groups * a["out_per_group"]
    stride = a["stride"]
    padding = a["padding"]
    if padding == "same":
        stride = 1  # torch allows 'same' with stride 1 only
    kh, kw = a["kernel"]
    s, d = _pair(stride), _pair(a["dilation"])
    if padding == "same":
        pads = [(d[i] * ((kh, kw)[i] - 1), 0) for i in range(2)]
        pads = [(t // 2, t - t // 2) for t, _ in pads]
    elif padding == "valid":
        pads = [(0, 0), (0, 0)]
    else:
        pads = [(p, p) for p in _pair(padding)]
    ok = all(_out(x.shape[2 + i], (kh, kw)[i], s[i], *pads[i], d[i]) >= 1 for i in range(2))
    return groups, oc, stride, padding, ok


@given(x=tensors_4d(max_batch=2, max_channels=8, max_hw=12), a=conv_args, seed=st.integers(0, 2**31 - 1),
       isa=st.sampled_from(bigmodel.available_isas()))
def test_conv2d_property(x, a, seed, isa):
    x.nan_to_num_(nan=0.5, posinf=2.0, neginf=-2.0)  # finite inputs: gradients are compared too
    groups, oc, stride, padding, ok = _resolve(x, a)
    assume(ok)
    g = torch.Generator().manual_seed(seed)
    kh, kw = a["kernel"]
    w = torch.randn(oc, x.shape[1] // groups, kh, kw, generator=g, dtype=x.dtype)
    b = torch.randn(oc, generator=g, dtype=x.dtype) if a["bias"] else None
    if a["unbatched"] and x.shape[0] >= 1:
        x = x[0]
    kw_args = dict(stride=stride, padding=padding, dilation=a["dilation"], groups=groups)
    tol = f32_or_f64(x.dtype, F32, F64)
    with bigmodel.use_isa(isa):
        inputs = [x.detach().requires_grad_(True), w.requires_grad_(True)] + ([b.requires_grad_(True)] if a["bias"] else [])
        y = ops.conv2d(*inputs, **kw_args)
        want = reference.conv2d(x, w, b, **kw_args)
        assert y.shape == want.shape
        torch.testing.assert_close(y.double(), want, **tol)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            assert y.is_contiguous(memory_format=torch.channels_last), "output must keep channels_last"
        if y.numel():
            gy = torch.randn(y.shape, generator=g, dtype=y.dtype)
            got = torch.autograd.grad(y, inputs, gy)
            ref = reference.grads(reference.conv2d, [x, w] + ([b] if a["bias"] else []), gy, **kw_args)
            for name, gg, rr in zip(("input", "weight", "bias"), got, ref):
                torch.testing.assert_close(gg.double(), rr, **tol, msg=lambda m, n=name: f"grad {n}: {m}")


# Invalid arguments: any draw; acceptable outcomes are a correct result or ValueError / TypeError
# whose message starts with "conv2d:".
any_int = st.integers(-2, 6)
invalid_conv = st.fixed_dictionaries({
    "x_shape": st.lists(st.integers(0, 5), min_size=1, max_size=5),
    "w_shape": st.lists(st.integers(0, 4), min_size=1, max_size=5),
    "bias_len": st.one_of(st.none(), st.integers(0, 6)),
    "stride": st.one_of(any_int, st.tuples(any_int, any_int), st.just((1, 1, 1))),
    "padding": st.one_of(any_int, st.tuples(any_int, any_int), st.sampled_from(["same", "valid", "full"])),
    "dilation": st.one_of(any_int, st.tuples(any_int, any_int)),
    "groups": st.one_of(any_int, st.just(1.5)),
    "dtype": st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int32]),
    "w_dtype": st.sampled_from([torch.float32, torch.float64, torch.int64]),
})


@given(a=invalid_conv)
def test_conv2d_bad_arguments_never_crash(a):
    x = torch.randn(a["x_shape"]).to(a["dtype"])
    w = torch.randn(a["w_shape"]).to(a["w_dtype"])
    b = None if a["bias_len"] is None else torch.randn(a["bias_len"]).to(a["w_dtype"])
    try:
        y = ops.conv2d(x, w, b, a["stride"], a["padding"], a["dilation"], a["groups"])
    except (ValueError, TypeError) as e:
        assert str(e).startswith("conv2d: "), f"message does not name conv2d: {e}"
        return
    # accepted: torch must agree
    want = torch.nn.functional.conv2d(x.double(), w.double(), None if b is None else b.double(), a["stride"],
                                      a["padding"], a["dilation"], a["groups"])
    torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4)
