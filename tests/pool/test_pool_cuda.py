"""CUDA pooling kernels against torch's own CUDA pooling: every dtype, both layouts, the window
arguments (stride, padding, dilation, ceil_mode, count_include_pad, divisor_override), gradients,
NaN/inf, streams, devices and the 64-bit index path. Skipped where torch.cuda.is_available() is
False; tests/pool/test_pool_cuda_emulated.py checks the same kernel code on the CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]

import bigmodel  # noqa: E402
from test_pool_cuda_emulated import nan_inf_input  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last"]
TOL = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-12, 1e-12), torch.float16: (2e-3, 2e-3),
       torch.bfloat16: (1.6e-2, 1.6e-2)}

# (shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CONFIGS = [
    ((2, 3, 8, 9), 2, 2, 0, 1, False),
    ((2, 3, 9, 7), 3, 2, 1, 1, False),
    ((2, 3, 9, 7), 3, 2, 1, 1, True),
    ((1, 4, 10, 11), (3, 2), (1, 2), (1, 0), (2, 3), False),
    ((1, 4, 10, 11), (3, 2), (2, 3), (1, 1), (2, 1), True),
    ((2, 2, 5, 6), (5, 4), 1, 2, 1, False),
    ((2, 5, 7, 6), (2, 3), (3, 1), 1, 1, True),
    ((3, 17, 31, 29), 3, 2, 1, 1, True),
    ((4, 64, 56, 56), 2, 2, 0, 1, False),
    ((2, 32, 112, 112), 3, 2, 1, 1, False),
]
AVG_CONFIGS = [c for c in MAX_CONFIGS if c[4] == 1] + [((1, 3, 11, 10), (4, 3), (3, 2), (2, 1), 1, True)]


@pytest.fixture(scope="module", autouse=True)
def _cuda_build():
    info = bigmodel.build_info()
    assert info["cuda_compiled"], ("a CUDA device is visible but bigmodel was built without its CUDA kernels: "
                                   "rebuild with BIGMODEL_CUDA=1")


def _input(shape, dtype, layout, kind="randn", device="cuda"):
    g = torch.Generator().manual_seed(sum(shape) * 7 + len(kind))
    if kind == "ties":
        x = torch.randint(0, 3, shape, generator=g).double()
    else:
        x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    x = x.to(device=device, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _close(actual, expected, dtype):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def _torch_max(x, *args, **kwargs):
    # torch's NCHW kernel as the reference, also for channels_last input: torch's channels_last
    # CUDA kernel reports index 0 for a window that is all -inf (and sends its gradient there),
    # where torch's CPU and NCHW kernels, and ours, report the window's first tap.
    return F.max_pool2d(x.contiguous(), *args, **kwargs)


def _assert_layout(out, x):
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()


@pytest.mark.parametrize("cfg", MAX_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["randn", "ties"])
def test_max_pool2d(cfg, dtype, layout, kind):
    shape, k, s, p, d, ceil = cfg
    x = _input(shape, dtype, layout, kind)
    out, idx = bigmodel.ops.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    ref, ref_idx = _torch_max(x, k, s, p, d, ceil, return_indices=True)
    assert out.device == x.device and out.dtype == dtype and idx.dtype == torch.int64
    _assert_layout(out, x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(bigmodel.ops.max_pool2d(x, k, s, p, d, ceil), ref, rtol=0, atol=0)

    xg, xr = x.detach().clone().requires_grad_(True), x.detach().clone().requires_grad_(True)
    gout = torch.randn(ref.shape, device="cuda", dtype=torch.float32).to(dtype)
    (gx,) = torch.autograd.grad(bigmodel.ops.max_pool2d(xg, k, s, p, d, ceil), xg, gout)
    (gr,) = torch.autograd.grad(_torch_max(xr, k, s, p, d, ceil), xr, gout)
    assert gx.shape == x.shape and gx.dtype == dtype
    _close(gx, gr, dtype)


@pytest.mark.parametrize("cfg", AVG_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5), (False, 3)])
def test_avg_pool2d(cfg, dtype, layout, cip, div):
    shape, k, s, p, _, ceil = cfg
    x = _input(shape, dtype, layout)
    out = bigmodel.ops.avg_pool2d(x, k, s, p, ceil, cip, div)
    ref = F.avg_pool2d(x, k, s, p, ceil, cip, div)
    _assert_layout(out, x)
    _close(out, ref, dtype)

    xg, xr = x.detach().clone().requires_grad_(True), x.detach().clone().requires_grad_(True)
    gout = torch.randn(ref.shape, device="cuda", dtype=torch.float32).to(dtype)
    (gx,) = torch.autograd.grad(bigmodel.ops.avg_pool2d(xg, k, s, p, ceil, cip, div), xg, gout)
    (gr,) = torch.autograd.grad(F.avg_pool2d(xr, k, s, p, ceil, cip, div), xr, gout)
    _close(gx, gr, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool2d_nan_and_infinities(dtype, layout):
    x = nan_inf_input().to("cuda", dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    for k, s, p, d, ceil in [(3, 2, 1, 1, True), (2, 1, 0, 1, False), ((2, 3), (1, 2), 1, (2, 1), False)]:
        out, idx = bigmodel.ops.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        ref, ref_idx = _torch_max(x, k, s, p, d, ceil, return_indices=True)
        torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)
        assert torch.equal(idx, ref_idx)
        xg, xr = x.detach().clone().requires_grad_(True), x.detach().clone().requires_grad_(True)
        gout = torch.randn(ref.shape, device="cuda").to(dtype)
        (gx,) = torch.autograd.grad(bigmodel.ops.max_pool2d(xg, k, s, p, d, ceil), xg, gout)
        (gr,) = torch.autograd.grad(_torch_max(xr, k, s, p, d, ceil), xr, gout)
        _close(gx, gr, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_unbatched_empty_batch_and_strided_inputs(dtype):
    x = torch.randn(3, 9, 10, device="cuda").to(dtype)
    torch.testing.assert_close(bigmodel.ops.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0)
    _close(bigmodel.ops.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1), dtype)

    empty = torch.randn(0, 3, 8, 8, device="cuda").to(dtype)
    assert bigmodel.ops.max_pool2d(empty, 2).shape == (0, 3, 4, 4)
    assert bigmodel.ops.avg_pool2d(empty, 2).shape == (0, 3, 4, 4)

    base = torch.randn(2, 8, 12, 10, device="cuda").to(dtype)
    for x in (base.transpose(2, 3), base[:, ::2, 1:, ::3], base.permute(0, 1, 3, 2)[..., 1:]):
        torch.testing.assert_close(bigmodel.ops.max_pool2d(x, 2), F.max_pool2d(x, 2), rtol=0, atol=0)
        _close(bigmodel.ops.avg_pool2d(x, 2, 1, 1), F.avg_pool2d(x, 2, 1, 1), dtype)


def test_runs_on_the_current_stream():
    x = torch.randn(16, 32, 64, 64, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        # Queue work on `stream` only; if our kernels ran on another stream they could read y
        # before it is written, or be unordered with the clone below.
        y = x * 2
        out = bigmodel.ops.max_pool2d(y, 2)
        gx = bigmodel.ops.avg_pool2d(y.requires_grad_(True), 3, 1, 1).sum()
        (g,) = torch.autograd.grad(gx, y)
        out_copy = out.clone()
    stream.synchronize()
    torch.testing.assert_close(out_copy, F.max_pool2d(x * 2, 2), rtol=0, atol=0)
    yr = (x * 2).requires_grad_(True)
    (gr,) = torch.autograd.grad(F.avg_pool2d(yr, 3, 1, 1).sum(), yr)
    torch.testing.assert_close(g, gr)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    x = torch.randn(2, 3, 9, 9, device="cuda:1")
    with torch.cuda.device(0):
        out = bigmodel.ops.max_pool2d(x, 3, 2, 1)
        assert out.device == x.device
        torch.testing.assert_close(out, F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0)


def test_backward_is_deterministic():
    x = torch.randn(8, 16, 33, 35, device="cuda", requires_grad=True)
    gout = torch.randn(8, 16, 33, 35, device="cuda")
    g1 = torch.ops.bigmodel.max_pool2d_backward(gout, x, [3, 3], [1, 1], [1, 1], [1, 1], False)
    g2 = torch.ops.bigmodel.max_pool2d_backward(gout, x, [3, 3], [1, 1], [1, 1], [1, 1], False)
    assert torch.equal(g1, g2)
    a1 = torch.ops.bigmodel.avg_pool2d_backward(gout, x, [3, 3], [1, 1], [1, 1], False, True, None)
    a2 = torch.ops.bigmodel.avg_pool2d_backward(gout, x, [3, 3], [1, 1], [1, 1], False, True, None)
    assert torch.equal(a1, a2)


def test_bad_input_raises():
    x = torch.randn(2, 3, 8, 8, device="cuda")
    with pytest.raises(ValueError, match="grad_output.*device|device.*grad_output"):
        torch.ops.bigmodel.max_pool2d_backward(torch.randn(2, 3, 4, 4), x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    with pytest.raises(ValueError, match="device"):
        torch.ops.bigmodel.avg_pool2d_backward(torch.randn(2, 3, 4, 4, device="cuda"), x.cpu(), [2, 2], [2, 2],
                                               [0, 0], False, True, None)
    with pytest.raises(TypeError, match="input"):
        bigmodel.ops.max_pool2d(x.to(torch.int32), 2)
    with pytest.raises(ValueError, match="padding"):
        bigmodel.ops.max_pool2d(x, 2, 2, 3)


def test_64bit_index_path():
    # Dilation and padding near 2^29 push window positions past 2^31, so the kernels switch to
    # 64-bit index math even for a small tensor. Only the middle tap of each 3-tap window lies
    # inside the input, so the output is the input itself. (torch refuses this padding, which
    # bigmodel allows up to half of the dilated kernel.)
    x = torch.randn(2, 3, 5, 6, device="cuda")
    big = 2**29
    out, idx = bigmodel.ops.max_pool2d(x, 3, 1, big, big, return_indices=True)
    torch.testing.assert_close(out, x, rtol=0, atol=0)
    assert torch.equal(idx, torch.arange(30, device="cuda").view(1, 1, 5, 6).expand(2, 3, 5, 6))
    gout = torch.randn_like(x)
    torch.testing.assert_close(torch.ops.bigmodel.max_pool2d_backward(gout, x, [3, 3], [1, 1], [big, big],
                                                                      [big, big], False), gout, rtol=0, atol=0)


@pytest.mark.slow
def test_more_than_2_31_elements():
    # 2^31 + 2^16 float16 elements (4 GiB): offsets past 2^31 need 64-bit index math.
    if torch.cuda.get_device_properties(0).total_memory < 16 * 2**30:
        pytest.skip("needs 16 GiB of GPU memory")
    x = torch.randn(1, 1, 2**15 + 2, 2**16, device="cuda", dtype=torch.float16)
    out = bigmodel.ops.max_pool2d(x, 2)
    ref = F.max_pool2d(x, 2)
    assert torch.equal(out, ref)
    del out, ref
    out = bigmodel.ops.avg_pool2d(x, 2)
    ref = F.avg_pool2d(x, 2)
    _close(out, ref, torch.float16)


@pytest.mark.parametrize("op", ["max", "avg"])
def test_opcheck_and_gradcheck(op):
    x = torch.randn(2, 3, 7, 6, device="cuda", dtype=torch.float64, requires_grad=True)
    if op == "max":
        args = (x, [3, 3], [2, 2], [1, 1], [1, 1], True)
        torch.library.opcheck(torch.ops.bigmodel.max_pool2d, args)
        torch.library.opcheck(torch.ops.bigmodel.max_pool2d_with_indices, args)
        assert torch.autograd.gradcheck(lambda t: bigmodel.ops.max_pool2d(t, 3, 2, 1, 1, True), (x,))
        assert torch.autograd.gradgradcheck(lambda t: bigmodel.ops.max_pool2d(t, 3, 2, 1, 1, True), (x,))
    else:
        args = (x, [3, 3], [2, 2], [1, 1], True, False, None)
        torch.library.opcheck(torch.ops.bigmodel.avg_pool2d, args)
        assert torch.autograd.gradcheck(lambda t: bigmodel.ops.avg_pool2d(t, 3, 2, 1, True, False), (x,))
        assert torch.autograd.gradgradcheck(lambda t: bigmodel.ops.avg_pool2d(t, 3, 2, 1, True, False), (x,))
