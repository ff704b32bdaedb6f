"""Convolution: bigmodel.ops.conv2d and bigmodel.nn.Conv2d against torch (values and all three
gradients) on random configurations for every ISA path and layout, edge shapes, gradcheck,
opcheck, torch.compile, the drop-in module, and bad input."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
import torch.nn.functional as F

import bigmodel
from bigmodel import ops, reference
from _helpers import stable_seed


def make_input(shape, layout: str, dtype=torch.float32):
    x = torch.randn(shape, dtype=dtype)
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a non-contiguous view: every other column of a wider tensor
        wide = torch.randn(*shape[:-1], shape[-1] * 2, dtype=dtype)
        return wide[..., ::2]
    return x


def random_config(rng: random.Random, max_cg: int = 9, max_hw: int = 15):
    """A valid conv2d configuration: groups (depthwise included), odd sizes, stride, dilation,
    int / pair / 'same' / 'valid' padding, and now and then a kernel exactly as large as the
    padded input or a 1x1 input."""
    while True:
        kind = rng.random()
        if kind < 0.15:  # depthwise
            groups = rng.randint(2, 12)
            icg, ocg = 1, 1
        elif kind < 0.35:
            groups = rng.randint(2, 4)
            icg, ocg = rng.randint(1, max_cg), rng.randint(1, max_cg)
        else:
            groups = 1
            icg, ocg = rng.randint(1, max_cg), rng.randint(1, 3 * max_cg)
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        sh, sw = rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3])
        dh, dw = rng.choice([1, 1, 2]), rng.choice([1, 1, 3])
        r = rng.random()
        if r < 0.15 and sh == sw == 1:
            padding = "same"
        elif r < 0.25:
            padding = "valid"
        elif r < 0.6:
            padding = (rng.randint(0, 3), rng.randint(0, 3))
        else:
            padding = rng.randint(0, 2)
        h, w = rng.randint(1, max_hw), rng.randint(1, max_hw)
        if rng.random() < 0.1:  # kernel as large as the padded input
            ph = 0 if isinstance(padding, str) else (padding if isinstance(padding, int) else padding[0])
            h = max(1, dh * (kh - 1) + 1 - 2 * ph)
        if rng.random() < 0.05:
            h = w = 1
        kwargs = dict(stride=(sh, sw), padding=padding, dilation=(dh, dw), groups=groups)
        try:
            with warnings.catch_warnings():  # torch's note that 'same' with even kernels copies the input
                warnings.simplefilter("ignore")
                F.conv2d(torch.zeros(1, icg * groups, h, w), torch.zeros(ocg * groups, icg, kh, kw), **kwargs)
        except RuntimeError:
            continue
        return kwargs, (icg * groups, ocg * groups, kh, kw, h, w)


def check_close(ours, ref64, torch32, what):
    """float32: our error against the float64 reference is at most twice torch's own float32
    error (plus a floor for when torch is exact); float64: tight tolerance."""
    assert ours.shape == ref64.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    if ours.dtype == torch.float64:
        torch.testing.assert_close(ours, ref64, rtol=1e-9, atol=1e-9, msg=what)
        return
    err = (ours.double() - ref64).abs().max().item() if ours.numel() else 0.0
    base = (torch32.double() - ref64).abs().max().item() if ours.numel() else 0.0
    scale = ref64.abs().max().item() if ours.numel() else 0.0
    assert err <= 2 * base + 1e-6 * (1 + scale), f"{what}: max error {err:.3g} vs torch's {base:.3g}"


def run_and_compare(x, weight, bias, kwargs, what):
    """Forward and the three gradients of ops.conv2d against torch (same dtype) and float64."""
    x = x.detach().requires_grad_(True)
    weight = weight.detach().requires_grad_(True)
    bias = None if bias is None else bias.detach().requires_grad_(True)
    y = ops.conv2d(x, weight, bias, **kwargs)
    yt = F.conv2d(x, weight, bias, **kwargs)
    ref = reference.conv2d(x, weight, bias, **kwargs)
    check_close(y, ref, yt, f"forward {what}")
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert y.is_contiguous(memory_format=torch.channels_last), f"output layout {what}"
    gy = torch.randn_like(yt)
    inputs = [x, weight] + ([bias] if bias is not None else [])
    grads = torch.autograd.grad(y, inputs, gy)
    grads_t = torch.autograd.grad(yt, inputs, gy)
    grads_r = reference.grads(lambda *t: reference.conv2d(*t, **kwargs), inputs, gy)
    for name, g, gt, gr in zip(("grad_input", "grad_weight", "grad_bias"), grads, grads_t, grads_r):
        check_close(g, gr, gt, f"{name} {what}")


LAYOUTS = ["nchw", "channels_last", "strided"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_torch_random_configs(isa, layout):
    rng = random.Random(stable_seed(isa, layout, "conv"))
    for _ in range(30):
        kwargs, (ic, oc, kh, kw, h, w) = random_config(rng)
        n = rng.choice([1, 1, 2, 3])
        x = make_input((n, ic, h, w), layout)
        weight = torch.randn(oc, ic // kwargs["groups"], kh, kw)
        bias = torch.randn(oc) if rng.random() < 0.6 else None
        run_and_compare(x, weight, bias, kwargs, f"{isa} {layout} x{tuple(x.shape)} w{tuple(weight.shape)} {kwargs}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_wide_channels_vector_paths(isa, dtype):
    # Enough channels for full register tiles, channel tails, merged (kw, ic) reductions,
    # stride-2 phases, the 1x1 path and the depthwise paths.
    cases = [
        ((2, 67, 13, 19), (70, 67, 3, 3), dict(padding=1)),
        ((2, 32, 11, 12), (64, 32, 3, 3), dict(padding=1)),
        ((1, 3, 29, 31), (16, 3, 7, 7), dict(stride=2, padding=3)),
        ((2, 40, 9, 10), (48, 40, 1, 1), dict()),
        ((2, 24, 10, 9), (40, 24, 1, 1), dict(stride=2)),
        ((2, 34, 12, 21), (34, 1, 3, 3), dict(padding=1, groups=34)),
        ((1, 20, 15, 33), (20, 1, 5, 3), dict(stride=2, padding=(2, 1), groups=20)),
        ((2, 36, 8, 9), (48, 12, 3, 2), dict(padding=(1, 2), dilation=(2, 1), groups=3)),
        # few output channels (the reduction-vectorised tile), reductions with and without a tail
        ((2, 40, 11, 13), (3, 40, 3, 3), dict(padding=1)),
        ((1, 5, 17, 19), (24, 5, 5, 5), dict(stride=2, padding=2)),
        ((2, 2, 9, 10), (21, 2, 3, 3), dict(padding=1, dilation=(1, 2))),
    ]
    for layout in ("nchw", "channels_last"):
        for xs, ws, kwargs in cases:
            x = make_input(xs, layout, dtype)
            weight = torch.randn(ws, dtype=dtype)
            run_and_compare(x, weight, torch.randn(ws[0], dtype=dtype), kwargs, f"{isa} {layout} {xs} {ws} {kwargs}")


def test_unbatched_batch_one_and_empty_batch(isa):
    w = torch.randn(6, 4, 3, 3)
    b = torch.randn(6)
    x = torch.randn(4, 9, 11)
    torch.testing.assert_close(ops.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1), rtol=1e-5, atol=1e-5)
    run_and_compare(x, w, b, dict(stride=2, padding=1), "unbatched")
    run_and_compare(torch.randn(1, 4, 9, 11), w, b, dict(padding="same"), "batch 1")
    e = torch.randn(0, 4, 9, 11, requires_grad=True)
    wr = w.clone().requires_grad_(True)
    br = b.clone().requires_grad_(True)
    y = ops.conv2d(e, wr, br, padding=1)
    assert y.shape == (0, 6, 9, 11)
    ge, gw, gb = torch.autograd.grad(y.sum(), (e, wr, br))
    assert ge.shape == e.shape and torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.zeros_like(b))


def test_same_padding_even_kernel_is_asymmetric_like_torch(isa):
    x = torch.randn(2, 3, 10, 7)
    for k, d in [((4, 2), (1, 1)), ((2, 3), (3, 1)), ((1, 4), (1, 2))]:
        w = torch.randn(5, 3, *k)
        y = ops.conv2d(x, w, None, padding="same", dilation=d)
        assert y.shape == (2, 5, 10, 7)
        run_and_compare(x, w, None, dict(padding="same", dilation=d), f"same {k} {d}")


def test_values_outside_every_window_do_not_leak(isa):
    # With stride 2, kernel 3 and no padding, input column 9 of 10 is read by no window: an inf
    # there must not reach any result (0 * inf would be NaN in a kernel that let padding lanes
    # or staged columns touch it).
    for groups, ic, oc in [(1, 5, 7), (4, 4, 4), (1, 20, 3)]:
        for layout in ("nchw", "channels_last"):
            x = make_input((2, ic, 9, 10), layout)
            x[:, :, :, 9] = float("inf")
            w = torch.randn(oc, ic // groups, 3, 3)
            run_and_compare(x, w, torch.randn(oc), dict(stride=2, groups=groups), f"inf outside windows {layout}")


def test_output_keeps_memory_format():
    w = torch.randn(8, 8, 3, 3)
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = ops.conv2d(x, w, None, 2, 1)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    (gx,) = torch.autograd.grad(y, x, torch.randn_like(y))
    assert gx.is_contiguous(memory_format=torch.channels_last)
    assert ops.conv2d(x.detach().contiguous(), w, None, 2, 1).is_contiguous()


def test_gradcheck_float64():
    torch.manual_seed(1)
    cases = [
        ((2, 3, 6, 7), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
        ((1, 4, 5, 6), (6, 2, 2, 3), dict(padding="same", groups=2)),
        ((2, 3, 6, 5), (3, 1, 3, 3), dict(stride=2, padding=1, groups=3)),
    ]
    for xs, ws, kwargs in cases:
        x = torch.randn(xs, dtype=torch.float64, requires_grad=True)
        w = torch.randn(ws, dtype=torch.float64, requires_grad=True)
        b = torch.randn(ws[0], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, c, d: ops.conv2d(a, c, d, **kwargs), (x, w, b))
        xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, c: ops.conv2d(a, c, None, **kwargs), (xc, w))
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, c, d: ops.conv2d(a, c, d, stride=2, padding=1), (x, w, b))


def _opcheck_inputs():
    x = torch.randn(2, 4, 7, 8)
    xc = torch.randn(2, 6, 6, 5).contiguous(memory_format=torch.channels_last)
    xu = torch.randn(3, 6, 7)
    w = torch.randn(5, 4, 3, 3)
    return [
        (x, w, torch.randn(5), [1, 1], [1, 1], [1, 1], 1),
        (x, w, None, [2, 1], [0, 1, 2, 0], [1, 2], 1),
        (xc, torch.randn(6, 3, 2, 2), torch.randn(6), [1, 2], [1, 0], [1, 1], 2),
        (xc, torch.randn(6, 1, 3, 3), None, [1, 1], [1, 1], [1, 1], 6),
        (xu, torch.randn(4, 3, 3, 3), torch.randn(4), [1, 1], [1, 1], [1, 1], 1),
    ]


@pytest.mark.parametrize("args", _opcheck_inputs(), ids=lambda a: f"x{tuple(a[0].shape)}")
def test_opcheck(args):
    args = tuple(a.requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(torch.ops.bigmodel.conv2d.default, args)


def test_opcheck_backward_ops():
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    g = torch.randn(2, 6, 4, 8, dtype=torch.float64)
    common = ([2, 1], [1, 1], [1, 1], 2)
    torch.library.opcheck(torch.ops.bigmodel.conv2d_backward_input.default,
                          (g.clone().requires_grad_(True), x, w.clone().requires_grad_(True), *common))
    torch.library.opcheck(torch.ops.bigmodel.conv2d_backward_weight.default,
                          (g.clone().requires_grad_(True), x.clone().requires_grad_(True), w, *common, True))
    torch.library.opcheck(torch.ops.bigmodel.conv2d_backward_weight.default, (g, x, w, *common, False))


def test_torch_compile_through_a_small_cnn():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = bigmodel.nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = bigmodel.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
            self.c3 = bigmodel.nn.Conv2d(8, 12, 1)
            self.pool = bigmodel.nn.MaxPool2d(2)

        def forward(self, x):
            x = self.pool(torch.relu(self.c1(x)))
            return self.c3(torch.relu(self.c2(x))).mean(dim=(2, 3))

    net = Net()
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    eager = net(x)
    g_eager = torch.autograd.grad(eager.sum(), [x, *net.parameters()])
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    g_comp = torch.autograd.grad(out.sum(), [x, *net.parameters()])
    torch.testing.assert_close(out, eager)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b)


# ---- the drop-in module ---------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
         groups=2, bias=False),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding="same", groups=6),
    dict(in_channels=4, out_channels=5, kernel_size=4, padding="same", dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=(1, 2), padding_mode="replicate"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="same", padding_mode="circular"),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items() if k not in ("in_channels", "out_channels")))
def test_module_mirrors_torch_nn(kwargs):
    torch.manual_seed(3)
    ours = bigmodel.nn.Conv2d(**kwargs)
    torch.manual_seed(3)
    theirs = torch.nn.Conv2d(**kwargs)
    assert isinstance(ours, torch.nn.Conv2d) and repr(ours) == repr(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), f"initialisation of {name} differs"
    x = torch.randn(2, kwargs["in_channels"], 9, 8)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    # state_dicts load both ways
    other = torch.nn.Conv2d(**kwargs)
    ours.load_state_dict(other.state_dict())
    torch.testing.assert_close(ours(x), other(x), rtol=1e-5, atol=1e-5)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-5)


def test_convert_swaps_conv_layers():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=4), torch.nn.Flatten()))
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    weight = model[0].weight
    bigmodel.nn.convert(model)
    assert type(model[0]) is bigmodel.nn.Conv2d and type(model[2][0]) is bigmodel.nn.Conv2d
    assert model[0].weight is weight
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


# ---- bad input ------------------------------------------------------------------------------

def _x(*shape, **kw):
    return torch.randn(*shape, **kw)


BAD_INPUTS = [
    # (callable, exception type, message fragment)
    (lambda: ops.conv2d(_x(1, 4, 8, 8), _x(6, 3, 3, 3)), ValueError,
     "expected input with 3 channels (weight.size(1) = 3 times groups = 1), got 4 channels"),
    (lambda: ops.conv2d(_x(1, 4, 8, 8), _x(6, 2, 3, 3), groups=3), ValueError,
     "groups (3) must divide the input channels (4)"),
    (lambda: ops.conv2d(_x(1, 6, 8, 8), _x(4, 2, 3, 3), groups=3), ValueError,
     "groups (3) must divide the output channels (weight.size(0) = 4)"),
    (lambda: ops.conv2d(_x(1, 3, 4, 4), _x(2, 3, 7, 7), padding=1), ValueError,
     "spans (7, 7), larger than the padded input (6, 6)"),
    (lambda: ops.conv2d(_x(1, 3, 5, 5), _x(2, 3, 3, 3), dilation=3), ValueError, "larger than the padded input"),
    (lambda: ops.conv2d(_x(8, 8), _x(2, 1, 3, 3)), ValueError, "expected input of shape (C, H, W) or (N, C, H, W)"),
    (lambda: ops.conv2d(_x(1, 1, 1, 8, 8), _x(2, 1, 3, 3)), ValueError, "got a 5-D tensor"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3)), ValueError, "expected weight of shape (out_channels"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3, dtype=torch.float64)), TypeError,
     "weight has dtype Double but input has dtype Float"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), _x(2, dtype=torch.float64)), TypeError,
     "bias has dtype Double but input has dtype Float"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), _x(3)), ValueError, "expected bias of shape (2,)"),
    (lambda: ops.conv2d(torch.zeros(1, 3, 8, 8, dtype=torch.int32), torch.zeros(2, 3, 3, 3, dtype=torch.int32)),
     TypeError, "input must be float32 or float64 on CPU, got Int"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8).half(), _x(2, 3, 3, 3).half()), TypeError, "float32 or float64 on CPU"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), stride=0), ValueError, "stride must be positive, got (0, 0)"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), dilation=(1, 0)), ValueError, "dilation must be positive"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), padding=-1), ValueError, "padding must be non-negative"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(3, 1, 3, 3), groups=0), ValueError, "groups must be positive, got 0"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), groups=1.5), TypeError, "groups must be an int"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), stride=2, padding="same"), ValueError,
     "padding='same' is not supported for strided convolutions"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), padding="full"), ValueError,
     "padding must be an int, a pair of ints, 'same' or 'valid'"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), stride=(1, 2, 3)), ValueError, "got 3 values"),
    (lambda: ops.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), padding=2 ** 40), ValueError, "must be below 2^31"),
    (lambda: ops.conv2d(_x(2, 0, 8, 8), _x(2, 0, 3, 3)), ValueError, "zero-size dimension"),
    (lambda: ops.conv2d(_x(2, 3, 0, 8), _x(2, 3, 3, 3)), ValueError, "zero-size channel or spatial dimension"),
    (lambda: torch.ops.bigmodel.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), None, [1, 1], [1, 1, 1], [1, 1], 1),
     ValueError, "padding must be an int, a pair of ints or 4 ints"),
    (lambda: torch.ops.bigmodel.conv2d_backward_input(_x(1, 2, 5, 5), _x(1, 3, 8, 8), _x(2, 3, 3, 3), [1, 1],
                                                      [0, 0], [1, 1], 1),
     ValueError, "grad_output has shape [1, 2, 5, 5] but the forward output has shape [1, 2, 6, 6]"),
    (lambda: torch.ops.bigmodel.conv2d_backward_weight(_x(1, 2, 6, 6, dtype=torch.float64), _x(1, 3, 8, 8),
                                                       _x(2, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1, True),
     TypeError, "grad_output has dtype Double but input has dtype Float"),
]


@pytest.mark.parametrize("call,exc,fragment", BAD_INPUTS)
def test_bad_input_raises_clear_error(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


# ---- CUDA (skipped without a GPU) -------------------------------------------------------------

CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_matches_torch(dtype, layout):
    rng = random.Random(stable_seed(str(dtype), layout, "cuda"))
    cases = [random_config(rng, max_cg=24, max_hw=20) for _ in range(25)]
    cases += [(dict(padding=1), (64, 64, 3, 3, 28, 28)), (dict(stride=2, padding=3), (3, 64, 7, 7, 45, 51)),
              (dict(), (128, 96, 1, 1, 14, 14)), (dict(padding=1, groups=32), (32, 32, 3, 3, 30, 17))]
    for kwargs, (ic, oc, kh, kw, h, w) in cases:
        n = rng.randint(1, 3)
        x = make_input((n, ic, h, w), layout).cuda()
        weight = torch.randn(oc, ic // kwargs["groups"] if "groups" in kwargs else ic, kh, kw, device="cuda")
        bias = torch.randn(oc, device="cuda")
        xs = x.to(dtype).requires_grad_(True)
        ws = weight.to(dtype).requires_grad_(True)
        bs = bias.to(dtype).requires_grad_(True)
        y = ops.conv2d(xs, ws, bs, **kwargs)
        ref = reference.conv2d(xs, ws, bs, **kwargs)
        # torch's own result at this precision sets the bar (cuDNN, float32 accumulation)
        yt = F.conv2d(xs, ws, bs, **kwargs)
        what = f"{dtype} {layout} x{tuple(x.shape)} w{tuple(weight.shape)} {kwargs}"
        assert y.dtype == dtype and y.shape == ref.shape, what
        gy = torch.randn_like(yt)
        g = torch.autograd.grad(y, (xs, ws, bs), gy)
        gt = torch.autograd.grad(yt, (xs, ws, bs), gy)
        gr = reference.grads(lambda a, b, c: reference.conv2d(a, b, c, **kwargs), [xs, ws, bs], gy)
        for name, a, t, r in zip(("output", "grad_input", "grad_weight", "grad_bias"), (y, *g), (yt, *gt), (ref, *gr)):
            err = (a.double() - r).abs().max().item()
            base = (t.double() - r).abs().max().item()
            scale = r.abs().max().item()
            floor = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype] * (1 + scale)
            assert err <= 2 * base + floor, f"{name} {what}: error {err:.3g} vs torch's {base:.3g}"


@pytest.mark.cuda
def test_cuda_float64_gradcheck_and_mixed_devices():
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c, d: ops.conv2d(a, c, d, stride=(2, 1), padding=1, groups=2), (x, w, b))
    with pytest.raises(ValueError, match="weight is on cpu but input is on cuda"):
        ops.conv2d(x.detach(), w.detach().cpu())
    with pytest.raises(ValueError, match="bias is on cpu but input is on cuda"):
        ops.conv2d(x.detach(), w.detach(), b.detach().cpu())
