"""Pooling: bigmodel.ops.{max,avg}_pool2d against torch (values, indices, gradients), every ISA
path, layouts, edge values, gradcheck, opcheck, torch.compile and bad input."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import bigmodel
from bigmodel import ops, reference
from _helpers import stable_seed


def has_empty_window(size, k, s, p, d, ceil_mode) -> bool:
    """True if some output's window has no tap inside the input (only with dilation > padding
    gaps). torch's CPU backward then scatters to an index outside the plane, so such shapes are
    compared with torch only in test_empty_window_behaviour."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return any(all(not (0 <= o * s - p + t * d < size) for t in range(k)) for o in range(out))


def random_max_config(rng: random.Random):
    """A valid max-pool configuration with odd sizes, dilation, padding and ceil_mode."""
    while True:
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        dh, dw = rng.randint(1, 3), rng.randint(1, 3)
        sh, sw = rng.randint(1, 3), rng.randint(1, 3)
        ph, pw = rng.randint(0, kh // 2), rng.randint(0, kw // 2)
        h, w = rng.randint(1, 19), rng.randint(1, 37)
        ceil = rng.random() < 0.5
        try:
            F.max_pool2d(torch.zeros(1, 1, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode=ceil)
        except RuntimeError:
            continue
        if has_empty_window(h, kh, sh, ph, dh, ceil) or has_empty_window(w, kw, sw, pw, dw, ceil):
            continue
        return dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), ceil_mode=ceil), (h, w)


def random_avg_config(rng: random.Random):
    while True:
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        sh, sw = rng.randint(1, 3), rng.randint(1, 3)
        ph, pw = rng.randint(0, kh // 2), rng.randint(0, kw // 2)
        h, w = rng.randint(1, 19), rng.randint(1, 37)
        kwargs = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), ceil_mode=rng.random() < 0.5,
                      count_include_pad=rng.random() < 0.5,
                      divisor_override=rng.choice([None, None, rng.randint(1, 7)]))
        try:
            F.avg_pool2d(torch.zeros(1, 1, h, w), **kwargs)
        except RuntimeError:
            continue
        return kwargs, (h, w)


def make_input(shape, layout: str, dtype=torch.float32):
    x = torch.randn(shape, dtype=dtype)
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a non-contiguous view: every other column of a wider tensor
        wide = torch.randn(*shape[:-1], shape[-1] * 2, dtype=dtype)
        return wide[..., ::2]
    return x


LAYOUTS = ["nchw", "channels_last", "strided"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool_matches_torch(isa, layout):
    rng = random.Random(stable_seed(isa, layout))
    for _ in range(25):
        kwargs, (h, w) = random_max_config(rng)
        n, c = rng.randint(1, 3), rng.choice([1, 3, 16, 21, 35])
        x = make_input((n, c, h, w), layout).requires_grad_(True)
        y, idx = ops.max_pool2d(x, **kwargs, return_indices=True)
        ry, ridx = F.max_pool2d(x.detach(), **kwargs, return_indices=True)
        torch.testing.assert_close(y, ry, rtol=0, atol=0, msg=f"{kwargs} {x.shape}")
        assert torch.equal(idx, ridx), f"indices differ for {kwargs} {x.shape}"
        gy = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, gy)
        (rgx,) = reference.grads(reference.max_pool2d, [x], gy, **kwargs)
        torch.testing.assert_close(gx.double(), rgx, rtol=1e-5, atol=1e-6, msg=f"grad {kwargs} {x.shape}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_avg_pool_matches_torch(isa, layout):
    rng = random.Random(stable_seed(isa, layout, "avg"))
    for _ in range(25):
        kwargs, (h, w) = random_avg_config(rng)
        n, c = rng.randint(1, 3), rng.choice([1, 3, 16, 21, 35])
        x = make_input((n, c, h, w), layout).requires_grad_(True)
        y = ops.avg_pool2d(x, **kwargs)
        torch.testing.assert_close(y.double(), reference.avg_pool2d(x, **kwargs), rtol=1e-5, atol=1e-6,
                                   msg=f"{kwargs} {x.shape}")
        gy = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, gy)
        (rgx,) = reference.grads(reference.avg_pool2d, [x], gy, **kwargs)
        torch.testing.assert_close(gx.double(), rgx, rtol=1e-5, atol=1e-6, msg=f"grad {kwargs} {x.shape}")


@pytest.mark.parametrize("op", ["max", "avg"])
def test_output_keeps_memory_format(op):
    fn = ops.max_pool2d if op == "max" else ops.avg_pool2d
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = fn(x, 3, 2, 1)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    (gx,) = torch.autograd.grad(y, x, torch.randn_like(y))
    assert gx.is_contiguous(memory_format=torch.channels_last)
    y2 = fn(x.detach().contiguous(), 3, 2, 1)
    assert y2.is_contiguous()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_shapes_vector_paths(isa, dtype):
    # Wide rows exercise the full-vector interior paths (stride 1 and the stride-2 even/odd path).
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for layout in ("nchw", "channels_last"):
        x = make_input((2, 67, 23, 70), layout, dtype).requires_grad_(True)
        for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (5, 3, 2)]:
            y = ops.max_pool2d(x, k, s, p)
            assert torch.equal(y, F.max_pool2d(x.detach(), k, s, p))
            gy = torch.randn_like(y)
            torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0].double(),
                                       reference.grads(reference.max_pool2d, [x], gy, kernel_size=k, stride=s,
                                                       padding=p)[0], **tol)
            ya = ops.avg_pool2d(x, k, s, p)
            torch.testing.assert_close(ya.double(), reference.avg_pool2d(x, k, s, p), **tol)
            torch.testing.assert_close(torch.autograd.grad(ya, x, gy)[0].double(),
                                       reference.grads(reference.avg_pool2d, [x], gy, kernel_size=k, stride=s,
                                                       padding=p)[0], **tol)


def test_unbatched_and_empty_batch(isa):
    x = torch.randn(5, 11, 13)
    torch.testing.assert_close(ops.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0)
    torch.testing.assert_close(ops.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1))
    y, i = ops.max_pool2d(x, 2, return_indices=True)
    assert y.shape == (5, 5, 6) and torch.equal(i, F.max_pool2d(x, 2, return_indices=True)[1])
    e = torch.randn(0, 4, 8, 8, requires_grad=True)
    ye = ops.max_pool2d(e, 2)
    assert ye.shape == (0, 4, 4, 4)
    (ge,) = torch.autograd.grad(ops.avg_pool2d(e, 2).sum(), e)
    assert ge.shape == e.shape


def test_nan_and_inf_follow_torch(isa):
    x = torch.randn(2, 5, 10, 12)
    x[0, 0, 1, 1] = float("nan")
    x[0, 1, 0, 0] = float("nan")
    x[0, 1, 0, 1] = float("nan")  # two NaNs in one window: torch keeps the last one's index
    x[1, 2] = float("-inf")       # a whole plane of -inf
    x[1, 3, 4:6, 4:6] = float("inf")
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1)]:
        for layout in ("nchw", "channels_last"):
            xx = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
            y, i = ops.max_pool2d(xx, k, s, p, return_indices=True)
            ry, ri = F.max_pool2d(xx, k, s, p, return_indices=True)
            torch.testing.assert_close(y, ry, rtol=0, atol=0, equal_nan=True)
            assert torch.equal(i, ri), (k, s, p, layout)


def test_empty_window_behaviour(isa):
    # W=1, kernel 2 with dilation 2 and padding 1: the only window's taps sit at -1 and 1, both
    # outside the input. Like torch, the output is -inf and the returned index is the first tap
    # position torch reports; unlike torch's CPU backward (which scatters to that out-of-plane
    # index), the gradient of an empty window goes nowhere.
    x = torch.randn(2, 3, 5, 1, requires_grad=True)
    y, i = ops.max_pool2d(x, (1, 2), 1, (0, 1), (1, 2), return_indices=True)
    ry, ri = F.max_pool2d(x.detach(), (1, 2), 1, (0, 1), (1, 2), return_indices=True)
    assert y.shape == ry.shape == (2, 3, 5, 1)
    assert torch.equal(y, ry) and bool(torch.isneginf(y).all())
    assert torch.equal(i, ri)
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(gx, torch.zeros_like(x))


def test_ties_pick_first_like_torch(isa):
    # Post-ReLU activations are full of exact zeros: the first maximum in window order must win,
    # or the gradient lands on a different pixel than torch's.
    x = torch.relu(torch.randn(3, 17, 14, 30)).requires_grad_(True)
    x.data[:, :, ::3, :] = 0.0
    y, i = ops.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert torch.equal(i, F.max_pool2d(x.detach(), 3, 2, 1, return_indices=True)[1])
    gy = torch.randn_like(y)
    ref = torch.autograd.grad(F.max_pool2d(x, 3, 2, 1), x, gy)[0]
    # Overlapping windows sum up to 4 contributions per pixel, in another order than torch's.
    torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0], ref, rtol=1e-6, atol=1e-6)


def test_gradcheck_float64():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    # distinct values so the max is not at a tie (the gradient would be undefined there)
    x.data = x.data + torch.arange(x.numel(), dtype=torch.float64).view_as(x) * 1e-3
    assert torch.autograd.gradcheck(lambda t: ops.max_pool2d(t, 3, 2, 1, dilation=1, ceil_mode=True), (x,))
    assert torch.autograd.gradcheck(lambda t: ops.max_pool2d(t, (2, 3), (1, 2), (1, 0), (2, 1)), (x,))
    for kw in [dict(count_include_pad=True), dict(count_include_pad=False), dict(divisor_override=5)]:
        assert torch.autograd.gradcheck(lambda t: ops.avg_pool2d(t, 3, 2, 1, ceil_mode=True, **kw), (x,))
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ops.avg_pool2d(t, 2), (xc,))
    assert torch.autograd.gradgradcheck(lambda t: ops.avg_pool2d(t, 3, 2, 1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: ops.max_pool2d(t, 2), (x,))


def _opcheck_inputs():
    x = torch.randn(2, 3, 9, 10)
    xc = torch.randn(2, 5, 8, 8).contiguous(memory_format=torch.channels_last)
    xu = torch.randn(3, 7, 7)
    return [
        ("max_pool2d", (x, [3, 3], [2, 2], [1, 1], [1, 1], False)),
        ("max_pool2d", (xc, [2, 2], [], [0, 0], [1, 1], True)),
        ("max_pool2d", (xu, [2, 3], [1, 2], [1, 1], [2, 1], False)),
        ("max_pool2d_with_indices", (x, [3, 3], [2, 2], [1, 1], [1, 1], True)),
        ("max_pool2d_with_indices", (xc, [2, 2], [2, 2], [0, 0], [1, 1], False)),
        ("avg_pool2d", (x, [3, 3], [2, 2], [1, 1], True, False, None)),
        ("avg_pool2d", (xc, [2, 2], [], [1, 1], False, True, 3)),
        ("avg_pool2d", (xu, [3, 2], [1, 1], [0, 1], False, True, None)),
    ]


@pytest.mark.parametrize("name,args", _opcheck_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_opcheck(name, args):
    args = tuple(a.requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(getattr(torch.ops.bigmodel, name).default, args)


def test_opcheck_backward_ops():
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    g = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.library.opcheck(torch.ops.bigmodel.max_pool2d_backward.default,
                          (g.requires_grad_(True), x, [3, 3], [2, 2], [1, 1], [1, 1], False))
    torch.library.opcheck(torch.ops.bigmodel.avg_pool2d_backward.default,
                          (g, x, [3, 3], [2, 2], [1, 1], False, True, None))


def test_torch_compile_through_pooling():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.pool = bigmodel.nn.MaxPool2d(2)
            self.avg = bigmodel.nn.AvgPool2d(3, 1, 1)

        def forward(self, x):
            return self.avg(self.pool(torch.relu(self.conv(x)))).sum(dim=(2, 3))

    net = Net()
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    eager = net(x)
    (g_eager,) = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    (g_comp,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(g_comp, g_eager)


def test_modules_mirror_torch_nn():
    m = bigmodel.nn.MaxPool2d(3, stride=2, padding=1, dilation=1, return_indices=True, ceil_mode=True)
    t = torch.nn.MaxPool2d(3, stride=2, padding=1, dilation=1, return_indices=True, ceil_mode=True)
    assert repr(m) == repr(t) and isinstance(m, torch.nn.MaxPool2d)
    x = torch.randn(2, 4, 11, 11)
    (y, i), (ry, ri) = m(x), t(x)
    assert torch.equal(y, ry) and torch.equal(i, ri)
    a = bigmodel.nn.AvgPool2d(2, count_include_pad=False, divisor_override=3)
    torch.testing.assert_close(a(x), torch.nn.AvgPool2d(2, count_include_pad=False, divisor_override=3)(x))


def test_convert_swaps_pooling_layers():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.MaxPool2d(2),
                                torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Flatten()))
    x = torch.randn(2, 1, 10, 10)
    before = model(x)
    weight = model[0].weight
    bigmodel.nn.convert(model)
    assert type(model[1]) is bigmodel.nn.MaxPool2d and type(model[2][0]) is bigmodel.nn.AvgPool2d
    assert model[0].weight is weight
    torch.testing.assert_close(model(x), before)


# ---- bad input ------------------------------------------------------------------------------

BAD_INPUTS = [
    # (callable, exception type, message fragment)
    (lambda: ops.max_pool2d(torch.randn(8, 8), 2), ValueError, "expected input of shape (C, H, W) or (N, C, H, W)"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 1, 8, 8), 2), ValueError, "got a 5-D tensor"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 9), ValueError, "is the kernel larger than the padded input"),
    (lambda: ops.avg_pool2d(torch.randn(1, 1, 2, 2), 3), ValueError, "output would be empty"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 2, padding=2), ValueError, "padding (2, 2) must be at most half"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 3, padding=2, dilation=2), ValueError,
     "padding (2, 2) must be at most half of kernel_size (3, 3)"),
    (lambda: ops.avg_pool2d(torch.randn(1, 1, 8, 8), 3, padding=2), ValueError, "must be at most half"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 2, stride=0), ValueError, "stride must be positive, got (0, 0)"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), (2, -1)), ValueError, "kernel_size must be positive"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 0), ValueError, "kernel_size must be positive"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 2, dilation=0), ValueError, "dilation must be positive"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 3, padding=-1), ValueError, "padding must be non-negative"),
    (lambda: ops.max_pool2d(torch.zeros(1, 1, 8, 8, dtype=torch.int32), 2), TypeError,
     "input must be float32 or float64 on CPU, got Int"),
    (lambda: ops.avg_pool2d(torch.zeros(1, 1, 8, 8, dtype=torch.float16), 2), TypeError, "float32 or float64"),
    (lambda: ops.max_pool2d(torch.randn(2, 0, 8, 8), 2), ValueError, "zero-size channel or spatial dimension"),
    (lambda: ops.avg_pool2d(torch.randn(1, 1, 8, 8), 2, divisor_override=0), ValueError,
     "divisor_override must not be zero"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 2.5), TypeError, "kernel_size must be an int or a pair"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), (2, 2, 2)), ValueError, "got 3 values"),
    (lambda: ops.max_pool2d(torch.randn(1, 1, 8, 8), 2 ** 40), ValueError, "must be below 2^31"),
    (lambda: torch.ops.bigmodel.max_pool2d_backward(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 8, 8), [2, 2], [2, 2],
                                                    [0, 0], [1, 1], False),
     ValueError, "grad_output has shape [1, 1, 3, 3] but the forward output has shape [1, 1, 4, 4]"),
    (lambda: torch.ops.bigmodel.avg_pool2d_backward(torch.randn(1, 1, 4, 4, dtype=torch.float64),
                                                    torch.randn(1, 1, 8, 8), [2, 2], [2, 2], [0, 0], False, True, None),
     TypeError, "grad_output has dtype Double but input has dtype Float"),
]


@pytest.mark.parametrize("call,exc,fragment", BAD_INPUTS)
def test_bad_input_raises_clear_error(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)
