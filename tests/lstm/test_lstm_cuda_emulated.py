"""The CUDA LSTM kernels (kernels/cuda/lstm.cu), run on the CPU and compared with the float64
reference: forward and backward, every dtype, reverse, lengths, with and without bias.

No GPU is needed: tests/cuda/lstm_emulation.cu includes the kernel file with its two launchers
replaced by host loops (every pointwise element in turn; every thread of every GEMM block, phase
by phase between the barriers), so the host orchestration, GEMM operand strides, tile index math
and dtype conversions are the GPU's own code. What it cannot check (launch configuration,
streams, real concurrency) is covered by the cuda-marked tests in tests/lstm/test_lstm.py on a machine
with a GPU. Skipped when nvcc is not found.
"""

from __future__ import annotations

import ctypes

import pytest
import torch

from bigmodel import reference
from _helpers import build_cuda_emulation

DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-9, atol=1e-11),
       torch.float16: dict(rtol=2e-2, atol=2e-2), torch.bfloat16: dict(rtol=6e-2, atol=6e-2)}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = build_cuda_emulation(tmp_path_factory, "lstm")
    so.bigmodel_lstm_emulate.restype = ctypes.c_int
    so.bigmodel_lstm_emulate.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                                         ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p)]
    so.bigmodel_lstm_workspace_bytes.restype = ctypes.c_int64
    so.bigmodel_lstm_workspace_bytes.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int]
    return so


def _ptr(t):
    return None if t is None else t.data_ptr()


def emulate(lib, dtype, x, h0, c0, w, reverse, lengths, grads):
    """Runs the emulated forward, then (with grads = (gout, ghn, gcn)) the backward."""
    T, B, I = x.shape
    H = w[1].shape[1]
    wd = torch.float64 if dtype == torch.float64 else torch.float32
    sizes = (ctypes.c_int64 * 7)(DTYPES[dtype], T, B, I, H, int(reverse), int(w[2] is not None))
    lens = None if lengths is None else (ctypes.c_int64 * B)(*lengths.tolist())
    out, h_n, c_n = torch.empty(T, B, H, dtype=dtype), torch.empty(B, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    gates, cells = torch.empty(T, B, 4 * H, dtype=wd), torch.empty(T, B, H, dtype=wd)
    ws = torch.empty(lib.bigmodel_lstm_workspace_bytes(sizes, 1) + lib.bigmodel_lstm_workspace_bytes(sizes, 0),
                     dtype=torch.uint8)
    gout, ghn, gcn = grads
    dgates = torch.empty(T, B, 4 * H, dtype=wd)
    dx, dh0, dc0 = torch.empty(T, B, I, dtype=dtype), torch.empty(B, H, dtype=dtype), torch.empty(B, H, dtype=dtype)
    dwih, dwhh, db = torch.empty_like(w[0]), torch.empty_like(w[1]), torch.empty(4 * H, dtype=dtype)
    tensors = [x, h0, c0, *w, out, h_n, c_n, gates, cells, gout, ghn, gcn, dgates, dx, dh0, dc0, dwih, dwhh, db, ws]
    ptrs = (ctypes.c_void_p * len(tensors))(*[_ptr(t) for t in tensors])
    assert lib.bigmodel_lstm_emulate(0, sizes, lens, ptrs) == 0
    assert lib.bigmodel_lstm_emulate(1, sizes, lens, ptrs) == 0
    return (out, h_n, c_n), (dx, dh0, dc0, dwih, dwhh, db)


CASES = [  # T, B, I, H, reverse, bias, lengths
    (3, 2, 5, 4, False, True, None),
    (4, 3, 7, 9, True, True, None),
    (2, 5, 3, 6, False, False, [2, 2, 1, 1, 0]),
    (6, 12, 70, 20, False, True, None),  # several GEMM blocks and K steps (T*B = 72, 4H = 80, I = 70)
    (5, 13, 17, 33, True, False, None),
    (1, 1, 1, 1, False, True, None),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}B{}I{}H{}{}{}{}".format(
    *c[:4], "r" if c[4] else "", "b" if c[5] else "", "l" if c[6] else ""))
def test_emulated_matches_reference(lib, dtype, case):
    T, B, I, H, reverse, bias, lengths = case
    g = torch.Generator().manual_seed(T * 1000 + B * 100 + H)
    rnd = lambda *s, scale=1.0: (torch.randn(*s, generator=g) * scale).to(dtype)  # noqa: E731
    x, h0, c0 = rnd(T, B, I), rnd(B, H), rnd(B, H)
    w = [rnd(4 * H, I, scale=0.4), rnd(4 * H, H, scale=0.4)] + ([rnd(4 * H), rnd(4 * H)] if bias else [None, None])
    lengths = None if lengths is None else torch.tensor(lengths)
    grads = (rnd(T, B, H), rnd(B, H), rnd(B, H))
    ours, our_grads = emulate(lib, dtype, x, h0, c0, w, reverse, lengths, grads)

    leaves = [t.double().requires_grad_(True) if t is not None else None for t in (x, h0, c0, *w)]
    r_out, (r_h, r_c) = reference.lstm(leaves[0], (leaves[1], leaves[2]), *leaves[3:], reverse=reverse,
                                       lengths=lengths)
    for a, b in zip(ours, (r_out, r_h, r_c)):
        torch.testing.assert_close(a.double(), b.detach(), **TOL[dtype])
    loss = sum((r * gr.double()).sum() for r, gr in zip((r_out, r_h, r_c), grads))
    live = [t for t in leaves if t is not None]
    ref_grads = dict(zip(map(id, live), torch.autograd.grad(loss, live)))
    names = ["input", "h0", "c0", "w_ih", "w_hh", "bias"]
    for name, ours_g, leaf in zip(names, our_grads, leaves[:5] + [leaves[5]]):
        if leaf is None:
            continue
        torch.testing.assert_close(ours_g.double(), ref_grads[id(leaf)], **TOL[dtype], msg=lambda m: f"{name}: {m}")
