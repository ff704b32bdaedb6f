"""The CUDA attention kernels, run on the CPU: no GPU is lent to this project, so
tests/cuda/attention_emulation.cu (kernels/cuda/attention_*.cu, unchanged, included through
tests/cuda/thread_emulation.h: one std::thread per CUDA thread, real barriers and shuffles, shared
memory poisoned with NaN) is compiled with nvcc as host C++ and its forward and backward are
compared with the float64 reference, for float32, float16 and bfloat16, every head-dim bucket,
masks, causal, GQA, dropout (the same hash as the CPU kernels) and odd sizes. Skipped where nvcc
is not found."""

from __future__ import annotations

import ctypes

import pytest
import torch

from bigmodel import reference
from bigmodel.ops.attention import dropout_keep_mask

from _helpers import build_cuda_emulation

DTYPE_CODE = {torch.float32: 0, torch.float16: 2, torch.bfloat16: 3}
i64, vp = ctypes.c_int64, ctypes.c_void_p


class Params(ctypes.Structure):
    """kernels/include/bigmodel/attention.h's AttentionParams, field for field."""

    _fields_ = [("dtype", ctypes.c_int), ("B", i64), ("Hq", i64), ("Hkv", i64), ("L", i64), ("S", i64), ("E", i64),
                ("Ev", i64), ("query", vp), ("q_sb", i64), ("q_sh", i64), ("q_sl", i64), ("key", vp), ("k_sb", i64),
                ("k_sh", i64), ("k_sl", i64), ("value", vp), ("v_sb", i64), ("v_sh", i64), ("v_sl", i64),
                ("output", vp), ("logsumexp", vp), ("mask_kind", ctypes.c_int), ("mask", vp), ("m_sb", i64),
                ("m_sh", i64), ("m_sl", i64), ("causal", ctypes.c_bool), ("scale", ctypes.c_double),
                ("dropout_p", ctypes.c_double), ("seed", ctypes.c_uint64), ("grad_output", vp), ("go_sb", i64),
                ("go_sh", i64), ("go_sl", i64), ("grad_query", vp), ("grad_key", vp), ("grad_value", vp),
                ("workspace", vp), ("num_threads", ctypes.c_int)]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    lib = build_cuda_emulation(tmp_path_factory, "attention", threads=True)
    lib.emu_params_size.restype = ctypes.c_ulong
    assert ctypes.sizeof(Params) == lib.emu_params_size(), "Params no longer mirrors AttentionParams"
    return lib


def run_emulated(lib, q, k, v, go, mask=None, causal=False, dropout_p=0.0, seed=0):
    B, Hq, L, E = q.shape
    Hkv, S, Ev = k.shape[1], k.shape[2], v.shape[3]
    out, lse = torch.empty(B, Hq, L, Ev, dtype=q.dtype), torch.empty(B, Hq, L)
    dq, dk, dv, ws = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty(max(B * Hq * L, 1))
    p = Params(dtype=DTYPE_CODE[q.dtype], B=B, Hq=Hq, Hkv=Hkv, L=L, S=S, E=E, Ev=Ev, output=out.data_ptr(),
               logsumexp=lse.data_ptr(), causal=causal, scale=E ** -0.5, dropout_p=dropout_p, seed=seed,
               num_threads=1, grad_query=dq.data_ptr(), grad_key=dk.data_ptr(), grad_value=dv.data_ptr(),
               workspace=ws.data_ptr())
    for name, t in (("q", q), ("k", k), ("v", v), ("go", go)):
        setattr(p, {"q": "query", "k": "key", "v": "value", "go": "grad_output"}[name], t.data_ptr())
        for suffix, dim in (("sb", 0), ("sh", 1), ("sl", 2)):
            setattr(p, f"{name}_{suffix}", t.stride(dim))
    if mask is not None:
        m4 = mask.expand(B, Hq, L, S)
        p.mask_kind = 1 if mask.dtype == torch.bool else 2
        p.mask, p.m_sb, p.m_sh, p.m_sl = m4.data_ptr(), m4.stride(0), m4.stride(1), m4.stride(2)
    lib.emu_forward(ctypes.byref(p))
    lib.emu_backward(ctypes.byref(p))
    return out, lse, (dq, dk, dv)


# (dtype, B, Hq, Hkv, L, S, E, Ev, causal, mask, dropout_p): every head-dim bucket (32, 64, 128,
# 256), partial tiles, L != S both ways, L = 1 and S = 1, GQA, both mask kinds with a fully
# masked row, dropout.
CASES = [
    (torch.float32, 2, 2, 1, 17, 33, 8, 8, False, None, 0.0),
    (torch.float32, 1, 2, 2, 70, 40, 64, 64, True, "bool", 0.0),
    (torch.float32, 1, 4, 2, 40, 90, 100, 7, True, "add", 0.3),
    (torch.float32, 1, 1, 1, 33, 70, 200, 256, False, "bool", 0.3),
    (torch.float32, 1, 1, 1, 1, 65, 16, 16, True, None, 0.0),
    (torch.float32, 2, 1, 1, 5, 1, 33, 40, False, "add", 0.0),
    (torch.float16, 1, 2, 1, 40, 64, 64, 64, True, None, 0.0),
    (torch.float16, 1, 2, 2, 17, 33, 130, 130, False, "add", 0.3),
    (torch.bfloat16, 2, 2, 2, 33, 40, 32, 32, False, "bool", 0.0),
    (torch.bfloat16, 1, 2, 1, 64, 33, 16, 40, True, None, 0.3),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{str(c[0])[6:]}-L{c[4]}-S{c[5]}-E{c[6]}-{c[9]}-p{c[10]}")
def test_emulated_cuda_kernels_match_reference(emulated, case):
    dtype, B, Hq, Hkv, L, S, E, Ev, causal, mask_kind, p = case
    torch.manual_seed(CASES.index(case))
    q, k, v = torch.randn(B, Hq, L, E), torch.randn(B, Hkv, S, E), torch.randn(B, Hkv, S, Ev)
    go = torch.randn(B, Hq, L, Ev)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(1, Hq, L, S) > 0.3
        mask[0, 0, min(2, L - 1)] = False  # one row sees no key: zeros, zero gradients
    elif mask_kind == "add":
        mask = torch.randn(B, 1, L, S).to(dtype)
    q, k, v, go = (t.to(dtype) for t in (q, k, v, go))
    seed = 12345
    out, lse, g = run_emulated(emulated, q, k, v, go, mask, causal, p, seed)

    keep = dropout_keep_mask(torch.tensor(seed), B * Hq, L, S, p).view(B, Hq, L, S) if p > 0 else None
    leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    ref = reference.scaled_dot_product_attention(*leaves, attn_mask=mask if mask_kind != "add" else mask.double(),
                                                 dropout_p=p, is_causal=causal, enable_gqa=Hq != Hkv,
                                                 dropout_mask=keep)
    rg = torch.autograd.grad(ref, leaves, go.double())
    # Relative to the larger of the reference's magnitude and 1 (a gradient can be ~0 where the
    # kernel's own rounding of dP - rowsum(dO * O) is of the order of the input precision).
    tol = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    for name, a, r in zip(("output", "grad_query", "grad_key", "grad_value"), (out, *g), (ref, *rg)):
        assert not a.float().isnan().any(), name
        err = (a.double() - r).abs().max().item()
        assert err <= tol * max(1.0, r.abs().max().item()), f"{name}: max error {err:.3g}"
    if mask_kind == "bool":
        row = min(2, L - 1)
        assert torch.equal(out[:, 0, row].float(), torch.zeros_like(out[:, 0, row].float()))
        assert lse[:, 0, row].isneginf().all()
