"""The CUDA convolution kernels' per-element code, run on the CPU and compared with torch.

No GPU is needed: tests/cuda/conv_emulation.cu includes kernels/cuda/conv.cu and runs the same
`__host__ __device__` operand loaders, epilogues, split reduction, per-channel sums and depthwise
bodies that the kernels run, over the same groups and K splits. This checks the implicit-GEMM
index math of all three passes, both layouts and all four dtypes wherever nvcc exists; what it
cannot check (shared-memory tiling, tensor-core fragments, launches) is covered by the CUDA tests
in tests/conv/test_conv.py on a machine with a GPU. Skipped when nvcc is not found.
"""

from __future__ import annotations

import ctypes
import random

import pytest
import torch
import torch.nn.functional as F
from _helpers import build_cuda_emulation, stable_seed

DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
# error bound relative to the reference's largest magnitude: rounding of the 16-bit output (and
# float32 accumulation) dominates
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = build_cuda_emulation(tmp_path_factory, "conv")
    so.bigmodel_conv_emulate.restype = ctypes.c_int
    so.bigmodel_conv_emulate.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int64)] + [ctypes.c_void_p] * 6 + [
        ctypes.c_int]
    return so


def _ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def emulate(lib, pass_, x, w, bias, dy, kwargs, layout, splits=1):
    """Runs one pass of the emulated CUDA code; returns its output (and grad_bias for pass 2)."""
    s, p, d, g = kwargs["stride"], kwargs["padding"], kwargs["dilation"], kwargs["groups"]
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    oh = (h + p[0] + p[1] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (wd + p[2] + p[3] - d[1] * (kw - 1) - 1) // s[1] + 1
    vals = [DTYPES[x.dtype], int(layout == "nhwc"), n, c, h, wd, oc, oh, ow, kh, kw, *s, p[0], p[2], *d, g]
    a = (ctypes.c_int64 * len(vals))(*vals)
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    x, dy = x.contiguous(memory_format=fmt), None if dy is None else dy.contiguous(memory_format=fmt)
    w = w.contiguous()
    gb = None
    if pass_ == 0:
        out = torch.empty((n, oc, oh, ow), dtype=x.dtype).contiguous(memory_format=fmt)
    elif pass_ == 1:
        out = torch.empty_like(x)
    else:
        out = torch.empty_like(w)
        gb = torch.empty(oc, dtype=x.dtype)
    rc = lib.bigmodel_conv_emulate(pass_, a, _ptr(x), _ptr(w), _ptr(bias), _ptr(dy), _ptr(out), _ptr(gb), splits)
    assert rc == 0
    return out, gb


def random_case(rng):
    groups = rng.choice([1, 1, 2, 3, "dw"])
    if groups == "dw":
        groups = rng.randint(2, 7)
        icg, ocg = 1, 1
    else:
        icg, ocg = rng.randint(1, 5), rng.randint(1, 6)
    kh, kw = rng.randint(1, 4), rng.randint(1, 4)
    s = (rng.randint(1, 3), rng.randint(1, 3))
    d = (rng.randint(1, 2), rng.randint(1, 2))
    p = [rng.randint(0, 2), rng.randint(0, 2), rng.randint(0, 2), rng.randint(0, 2)]  # top, bottom, left, right
    while True:
        h, w = rng.randint(1, 9), rng.randint(1, 9)
        if h + p[0] + p[1] >= d[0] * (kh - 1) + 1 and w + p[2] + p[3] >= d[1] * (kw - 1) + 1:
            break
    n = rng.randint(1, 3)
    return (n, icg * groups, h, w), (ocg * groups, icg, kh, kw), dict(stride=s, padding=p, dilation=d, groups=groups)


def reference(x, w, b, dy, kwargs):
    """float64 forward and gradients; padding (top, bottom, left, right) through F.pad."""
    p = kwargs["padding"]
    xd = x.double().requires_grad_(True)
    wd = w.double().requires_grad_(True)
    bd = b.double().requires_grad_(True)
    y = F.conv2d(F.pad(xd, (p[2], p[3], p[0], p[1])), wd, bd, kwargs["stride"], 0, kwargs["dilation"],
                 kwargs["groups"])
    gx, gw, gb = torch.autograd.grad(y, (xd, wd, bd), dy.double())
    return y.detach(), gx, gw, gb


def _check(ours, ref, dtype, what):
    assert ours.shape == ref.shape, what
    err = (ours.double() - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    assert err <= TOL[dtype] * (1 + scale), f"{what}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("dtype", list(DTYPES), ids=lambda t: str(t).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_emulated_cuda_conv_matches_torch(lib, dtype, layout):
    rng = random.Random(stable_seed(str(dtype), layout))
    for _ in range(25):
        xs, ws, kwargs = random_case(rng)
        x = torch.randn(xs).to(dtype)
        w = torch.randn(ws).to(dtype)
        b = torch.randn(ws[0]).to(dtype)
        p = kwargs["padding"]
        y_ref = F.conv2d(F.pad(x.double(), (p[2], p[3], p[0], p[1])), w.double(), b.double(), kwargs["stride"], 0,
                         kwargs["dilation"], kwargs["groups"])
        what = f"{dtype} {layout} x{xs} w{ws} {kwargs}"
        y, _ = emulate(lib, 0, x, w, b, None, kwargs, layout)
        _check(y, y_ref, dtype, f"forward {what}")
        dy = torch.randn(y_ref.shape).to(dtype)
        _, gx_ref, gw_ref, gb_ref = reference(x, w, b, dy, kwargs)
        gx, _ = emulate(lib, 1, x, w, None, dy, kwargs, layout)
        _check(gx, gx_ref, dtype, f"grad_input {what}")
        for splits in (1, 3):
            gw, gb = emulate(lib, 2, x, w, None, dy, kwargs, layout, splits=splits)
            _check(gw, gw_ref, dtype, f"grad_weight splits={splits} {what}")
            _check(gb, gb_ref, dtype, f"grad_bias {what}")
