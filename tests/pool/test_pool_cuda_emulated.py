"""The CUDA pooling kernels' per-element code, run on the CPU and compared with torch.

No GPU is needed: tests/cuda/pool_emulation.cu includes kernels/cuda/pool.cu and runs the same
`__host__ __device__` bodies that the kernels run per thread, one element after another, in both
index widths (32- and 64-bit) and both layouts. This checks the index math, window rules, NaN and
infinity handling and dtype conversions of the CUDA path wherever nvcc exists; what it cannot check
(launch configuration, streams) is covered by tests/pool/test_pool_cuda.py on a machine with a GPU.
Skipped when nvcc is not found.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from _helpers import build_cuda_emulation

DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
MAX_FWD, MAX_BWD, AVG_FWD, AVG_BWD = 0, 1, 2, 3


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = build_cuda_emulation(tmp_path_factory, "pool")
    so.bigmodel_pool_emulate.restype = ctypes.c_int
    so.bigmodel_pool_emulate.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p,
                                         ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    so.bigmodel_pool_index_bits.restype = ctypes.c_int
    so.bigmodel_pool_index_bits.argtypes = [ctypes.POINTER(ctypes.c_int64)]
    return so


def _out_size(size, k, s, p, d, ceil_mode):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _params(x_shape, k, s, p, d, ceil, dtype, layout, cip=True, div=None):
    N, C, H, W = x_shape
    OH, OW = _out_size(H, k[0], s[0], p[0], d[0], ceil), _out_size(W, k[1], s[1], p[1], d[1], ceil)
    vals = [DTYPES[dtype], 1 if layout == "nhwc" else 0, N, C, H, W, OH, OW, *k, *s, *p, *d, int(cip), div or 0]
    return (ctypes.c_int64 * len(vals))(*vals), (N, C, OH, OW)


def _fmt(layout):
    return torch.channels_last if layout == "nhwc" else torch.contiguous_format


def _ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def emulate(lib, op, x, gout, k, s, p, d, ceil, layout, index_bits, cip=True, div=None):
    """Runs one op's kernel bodies over every element; returns (result, indices or None)."""
    fmt = _fmt(layout)
    x = x.contiguous(memory_format=fmt)
    params, out_shape = _params(tuple(x.shape), k, s, p, d, ceil, x.dtype, layout, cip, div)
    if op in (MAX_FWD, AVG_FWD):
        result = torch.full(out_shape, 12345.0, dtype=x.dtype).contiguous(memory_format=fmt)
    else:
        result = torch.full(x.shape, 12345.0, dtype=x.dtype).contiguous(memory_format=fmt)
        gout = gout.contiguous(memory_format=fmt)
    idx = torch.full(out_shape, -12345, dtype=torch.int64).contiguous(memory_format=fmt) if op == MAX_FWD else None
    bits = lib.bigmodel_pool_emulate(op, params, _ptr(x), _ptr(gout), _ptr(result), _ptr(idx), index_bits)
    assert bits == (index_bits or bits), f"asked for {index_bits}-bit indexing, got {bits}"
    return result, idx


TOL = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-12, 1e-12), torch.float16: (2e-3, 2e-3),
       torch.bfloat16: (1.6e-2, 1.6e-2)}


def assert_close(actual, expected, dtype):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol, equal_nan=True)


# (shape, kernel, stride, padding, dilation, ceil_mode); odd sizes, asymmetric windows, overlap,
# stride > kernel, ceil-mode tails and dilation.
MAX_CONFIGS = [
    ((2, 3, 8, 9), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((2, 3, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1), False),
    ((2, 3, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1), True),
    ((1, 4, 10, 11), (3, 2), (1, 2), (1, 0), (2, 3), False),
    ((1, 4, 10, 11), (3, 2), (2, 3), (1, 1), (2, 1), True),
    ((2, 2, 5, 6), (5, 4), (1, 1), (2, 2), (1, 1), False),
    ((1, 3, 1, 6), (1, 3), (1, 2), (0, 1), (1, 1), True),
    ((2, 5, 7, 6), (2, 3), (3, 1), (1, 1), (1, 1), True),
    ((1, 2, 13, 4), (4, 1), (3, 1), (2, 0), (3, 1), True),
]
AVG_CONFIGS = [c for c in MAX_CONFIGS if c[4] == (1, 1)] + [((1, 3, 11, 10), (4, 3), (3, 2), (2, 1), (1, 1), True)]
LAYOUTS = ["nchw", "nhwc"]
BITS = [32, 64]


def _input(shape, dtype, kind="randn"):
    g = torch.Generator().manual_seed(zlib.crc32(repr((shape, kind)).encode()))
    if kind == "ties":  # few distinct values: many equal maxima, so first-wins is exercised
        x = torch.randint(0, 3, shape, generator=g).double()
    else:
        x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    return x.to(dtype)


def _max_ref(x, k, s, p, d, ceil):
    return F.max_pool2d(x.double(), k, s, p, d, ceil_mode=ceil, return_indices=True)


def max_cases(fn):
    """Every max-pool configuration x dtype x layout x index width x input kind."""
    for mark in (pytest.mark.parametrize("kind", ["randn", "ties"]), pytest.mark.parametrize("bits", BITS),
                 pytest.mark.parametrize("layout", LAYOUTS), pytest.mark.parametrize("dtype", list(DTYPES), ids=str),
                 pytest.mark.parametrize("cfg", MAX_CONFIGS, ids=str)):
        fn = mark(fn)
    return fn


@max_cases
def test_max_forward_and_indices(lib, cfg, dtype, layout, bits, kind):
    shape, k, s, p, d, ceil = cfg
    x = _input(shape, dtype, kind)
    out, idx = emulate(lib, MAX_FWD, x, None, k, s, p, d, ceil, layout, bits)
    ref, ref_idx = _max_ref(x, k, s, p, d, ceil)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=0)  # a max is exact in any dtype
    assert torch.equal(idx, ref_idx)


@max_cases
def test_max_backward(lib, cfg, dtype, layout, bits, kind):
    shape, k, s, p, d, ceil = cfg
    x = _input(shape, dtype, kind)
    ref, _ = _max_ref(x, k, s, p, d, ceil)
    gout = torch.randn(ref.shape, dtype=torch.float64).to(dtype)
    gin, _ = emulate(lib, MAX_BWD, x, gout, k, s, p, d, ceil, layout, bits)
    x64 = x.detach().double().clone().requires_grad_(True)
    F.max_pool2d(x64, k, s, p, d, ceil_mode=ceil).backward(gout.double())
    assert gin.shape == x.shape and gin.dtype == dtype
    assert_close(gin, x64.grad, dtype)


@pytest.mark.parametrize("cfg", AVG_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5), (False, -3)])
def test_avg_forward_and_backward(lib, cfg, dtype, layout, bits, cip, div):
    shape, k, s, p, _, ceil = cfg
    one = (1, 1)
    x = _input(shape, dtype)
    out, _ = emulate(lib, AVG_FWD, x, None, k, s, p, one, ceil, layout, bits, cip, div)
    x64 = x.detach().double().clone().requires_grad_(True)
    ref = F.avg_pool2d(x64, k, s, p, ceil, cip, div)
    assert_close(out, ref.detach(), dtype)
    gout = torch.randn(ref.shape, dtype=torch.float64).to(dtype)
    gin, _ = emulate(lib, AVG_BWD, x, gout, k, s, p, one, ceil, layout, bits, cip, div)
    ref.backward(gout.double())
    assert_close(gin, x64.grad, dtype)


def nan_inf_input():
    """(2, 3, 7, 8) float64: windows with one and with two NaNs, NaN beside +inf, planes and
    windows of -inf, a column of +inf (also used by tests/pool/test_pool_cuda.py)."""
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    x[0, 0, 1, 1] = math.nan
    x[0, 0, 1, 2] = math.nan
    x[0, 1, 3, 3] = math.inf
    x[0, 1, 4, 4] = math.nan
    x[1, 0] = -math.inf
    x[1, 1, 2:5, 2:5] = -math.inf
    x[1, 2, :, 0] = math.inf
    return x


@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_nan_and_infinities(lib, dtype, layout):
    # NaN anywhere in a window wins (the last NaN, by torch's "greater or NaN" rule); +inf beats
    # everything else; a window of -inf reports its first tap.
    x = nan_inf_input().to(dtype)
    for k, s, p, d, ceil in [((3, 3), (2, 2), (1, 1), (1, 1), True), ((2, 2), (1, 1), (0, 0), (1, 1), False),
                             ((2, 3), (1, 2), (1, 1), (2, 1), False)]:
        ref, ref_idx = _max_ref(x, k, s, p, d, ceil)
        out, idx = emulate(lib, MAX_FWD, x, None, k, s, p, d, ceil, layout, 0)
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=0, equal_nan=True)
        assert torch.equal(idx, ref_idx), (k, s, p, d, ceil)
        gout = torch.randn(ref.shape, dtype=torch.float64).to(dtype)
        gin, _ = emulate(lib, MAX_BWD, x, gout, k, s, p, d, ceil, layout, 0)
        x64 = x.detach().double().clone().requires_grad_(True)
        F.max_pool2d(x64, k, s, p, d, ceil_mode=ceil).backward(gout.double())
        assert_close(gin, x64.grad, dtype)


def _brute_max(x, k, s, p, d, ceil):
    """The documented rule, literally (for shapes torch refuses, e.g. padding > kernel/2)."""
    N, C, H, W = x.shape
    OH, OW = _out_size(H, k[0], s[0], p[0], d[0], ceil), _out_size(W, k[1], s[1], p[1], d[1], ceil)
    out = torch.empty(N, C, OH, OW, dtype=torch.float64)
    idx = torch.empty(N, C, OH, OW, dtype=torch.int64)
    for n, c, oh, ow in itertools.product(range(N), range(C), range(OH), range(OW)):
        hs, ws = oh * s[0] - p[0], ow * s[1] - p[1]
        hf = hs + (-(hs) + d[0] - 1) // d[0] * d[0] if hs < 0 else hs
        wf = ws + (-(ws) + d[1] - 1) // d[1] * d[1] if ws < 0 else ws
        best, bi = -math.inf, hf * W + wf
        for th, tw in itertools.product(range(k[0]), range(k[1])):
            ih, iw = hs + th * d[0], ws + tw * d[1]
            if 0 <= ih < H and 0 <= iw < W:
                v = float(x[n, c, ih, iw])
                if v > best or v != v:
                    best, bi = v, ih * W + iw
        out[n, c, oh, ow], idx[n, c, oh, ow] = best, bi
    return out, idx


@pytest.mark.parametrize("layout", LAYOUTS)
def test_empty_windows_and_huge_geometry_use_64bit(lib, layout):
    # Padding up to half of the *dilated* kernel (which the binding allows) can leave windows
    # with no tap inside the input: -inf, the first tap's index, and no gradient. Dilation and
    # padding near 2^30 make 32-bit positions overflow: the kernels must pick 64-bit math.
    x = torch.randn(1, 2, 3, 5, dtype=torch.float64)
    cases = [((2, 2), (1, 1), (2, 2), (4, 4), False, 32),                    # some windows empty
             ((2, 2), (1, 1), (2**30, 1), (2**31 - 1, 1), False, 64),         # all rows empty
             ((3, 3), (1, 1), (2**29, 2**29), (2**29, 2**29), False, 64),     # only the middle tap is inside
             ((1, 2), (2**31 - 1, 1), (0, 2**29), (1, 2**30), True, 64)]      # ceil-mode row, empty columns
    for k, s, p, d, ceil, want_bits in cases:
        params, _ = _params(tuple(x.shape), k, s, p, d, ceil, x.dtype, layout)
        assert lib.bigmodel_pool_index_bits(params) == want_bits
        ref, ref_idx = _brute_max(x, k, s, p, d, ceil)
        out, idx = emulate(lib, MAX_FWD, x, None, k, s, p, d, ceil, layout, 0)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        assert torch.equal(idx, ref_idx)
        gout = torch.randn(ref.shape, dtype=torch.float64)
        gin, _ = emulate(lib, MAX_BWD, x, gout, k, s, p, d, ceil, layout, 0)
        expected = torch.zeros_like(x)
        flat = expected.view(x.shape[0], x.shape[1], -1)
        for n, c, oh, ow in itertools.product(*(range(v) for v in ref.shape)):
            if ref[n, c, oh, ow] != -math.inf:  # a non-empty window (all inputs here are finite)
                flat[n, c, ref_idx[n, c, oh, ow]] += gout[n, c, oh, ow]
        torch.testing.assert_close(gin, expected, rtol=1e-12, atol=1e-12)


def test_index_width_choice(lib):
    def bits(N, C, H, W, k=2, s=2, p=0, d=1):
        OH, OW = _out_size(H, k, s, p, d, False), _out_size(W, k, s, p, d, False)
        vals = [0, 0, N, C, H, W, OH, OW, k, k, s, s, p, p, d, d, 1, 0]
        return lib.bigmodel_pool_index_bits((ctypes.c_int64 * len(vals))(*vals))

    assert bits(64, 64, 56, 56) == 32
    assert bits(1, 1, 46340, 46340) == 32          # 2^31 - 1 > 46340^2 = 2147395600
    assert bits(2, 1, 46341, 46341) == 64          # input elements > 2^31 - 1
    assert bits(1, 1, 8, 8, k=3, s=1, p=1, d=2**30) == 64
