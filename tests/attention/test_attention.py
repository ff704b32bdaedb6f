"""Fused attention: bigmodel.ops.scaled_dot_product_attention against the float64 reference and
torch's SDPA (values and gradients), every ISA path, masks of every kind, causal with L != S,
GQA, strided inputs, fully masked rows, dropout, gradcheck, opcheck, torch.compile, the nn
modules and bad input. CUDA tests run wherever a GPU exists."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import bigmodel
from bigmodel import ops, reference
from bigmodel.ops.attention import dropout_keep_mask, scaled_dot_product_attention_with_seed

sdpa = ops.scaled_dot_product_attention


def math_sdpa(*args, **kwargs):
    """torch's own naive implementation at the inputs' precision (the 'same-precision reference')."""
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(*args, **kwargs)


def assert_flash_rule(ours, ref64, same_precision, what="", scale=None):
    """flash-attention's rule: our max error against the float64 reference is at most twice that
    of a same-precision reference implementation, and (in float32) below 1e-5 relative to
    `scale` (default: the reference's largest magnitude; for gradients see grad_scales).

    In float32 the max error of one draw is noisy (with outlier logits it is set by one score's
    rounding in the QK^T GEMM, whose accumulation order differs from MKL's), so the allowance
    has a floor of 2e-6 relative; the 1e-5 relative bound is the hard one."""
    err = (ours.double() - ref64).abs().max().item()
    ref_err = (same_precision.double() - ref64).abs().max().item()
    if scale is None:
        scale = ref64.abs().max().item()
    scale = scale or 1.0
    floor = {torch.float32: 2e-6, torch.float64: 1e-12}.get(ours.dtype, 1e-4) * scale
    assert err <= 2 * ref_err + floor, f"{what}: error {err:.3g} > 2 x same-precision error {ref_err:.3g}"
    if ours.dtype == torch.float32:
        assert err / scale < 1e-5, f"{what}: relative error {err / scale:.3g}"


def grad_scales(q, k, v, go, ref_grads):
    """The magnitude each gradient's rounding error is relative to. The backward forms
    dS = P * (dP - D) with D = rowsum(dO * O), as FlashAttention-2 does, so dQ = scale * dS K and
    dK = scale * dS^T Q carry an error of order eps * |dP| * |K| (resp. |Q|) even where the exact
    gradient is 0 (a row that sees a single key)."""
    s = q.shape[-1] ** -0.5 if q.shape[-1] else 1.0
    dp = torch.matmul(go.double(), v.double().transpose(-2, -1)).abs().max().item() if go.numel() and v.numel() else 0
    natural = [s * dp * k.abs().max().item() if k.numel() else 0, s * dp * q.abs().max().item() if q.numel() else 0,
               go.abs().max().item() if go.numel() else 0]
    return [max(n, r.abs().max().item() if r.numel() else 0) for n, r in zip(natural, ref_grads)]


def grads(fn, inputs, grad_out):
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*xs)
    return out, torch.autograd.grad(out, xs, grad_out)


def ref_grads(fn, inputs, grad_out):
    """grads() with float64 leaves, so the reference gradients are never rounded to float32."""
    return grads(fn, [x.double() for x in inputs], grad_out.double())


def random_case(rng: random.Random, big=False):
    b, h = rng.randint(1, 3), rng.choice([1, 2, 3])
    if big:
        L, S = rng.choice([1, 63, 200, 333]), rng.choice([1, 77, 513, 700])
    else:
        L, S = rng.choice([1, 2, 5, 17, 40]), rng.choice([1, 3, 8, 33])
    E = rng.choice([1, 3, 8, 16, 59, 64])
    Ev = rng.choice([E, E, 5, 24])
    return b, h, L, S, E, Ev


def make_qkv(b, h, L, S, E, Ev, dtype=torch.float32, hkv=None, outliers=False):
    hkv = hkv or h
    q = torch.randn(b, h, L, E, dtype=dtype)
    k = torch.randn(b, hkv, S, E, dtype=dtype)
    v = torch.randn(b, hkv, S, Ev, dtype=dtype)
    if outliers:  # a few huge logits: the softmax is far from uniform
        q = q * 4
        k.view(-1)[torch.randperm(k.numel())[: max(1, k.numel() // 50)]] *= 12
    return q, k, v


# ---- forward and backward against the references, every ISA path -----------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_random_shapes_match_reference(isa, causal):
    rng = random.Random(f"{isa}-{causal}")
    for i in range(10):
        b, h, L, S, E, Ev = random_case(rng, big=i >= 8)
        q, k, v = make_qkv(b, h, L, S, E, Ev, outliers=i % 3 == 0)
        go = torch.randn(b, h, L, Ev)
        out, g = grads(lambda *t: sdpa(*t, is_causal=causal), (q, k, v), go)
        ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, is_causal=causal), (q, k, v), go)
        same, sg = grads(lambda *t: math_sdpa(*t, is_causal=causal), (q, k, v), go)
        what = f"{isa} causal={causal} shape {(b, h, L, S, E, Ev)}"
        assert_flash_rule(out, ref, same, what)
        for name, a, r, s, sc in zip("qkv", g, rg, sg, grad_scales(q, k, v, go, rg)):
            assert_flash_rule(a, r, s, f"{what} grad {name}", sc)


def test_float64_matches_reference_tightly(isa):
    q, k, v = make_qkv(2, 3, 37, 530, 19, 7, dtype=torch.float64)
    m = torch.randn(37, 530, dtype=torch.float64)
    go = torch.randn(2, 3, 37, 7, dtype=torch.float64)
    for causal in (False, True):
        out, g = grads(lambda *t: sdpa(*t, attn_mask=m, is_causal=causal), (q, k, v), go)
        ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, attn_mask=m, is_causal=causal),
                        (q, k, v), go)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for a, r in zip(g, rg):
            torch.testing.assert_close(a, r, rtol=1e-11, atol=1e-11)


def test_large_blocks_vector_paths(isa):
    # Several query and key blocks, head dims 64 (full vectors) and 256, against torch's SDPA.
    for E, L, S in [(64, 700, 1100), (256, 130, 600)]:
        q, k, v = make_qkv(1, 2, L, S, E, E)
        go = torch.randn(1, 2, L, E)
        for causal in (False, True):
            out, g = grads(lambda *t: sdpa(*t, is_causal=causal), (q, k, v), go)
            ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, is_causal=causal), (q, k, v), go)
            same, sg = grads(lambda *t: math_sdpa(*t, is_causal=causal), (q, k, v), go)
            assert_flash_rule(out, ref, same, f"E={E} causal={causal}")
            for a, r, s, sc in zip(g, rg, sg, grad_scales(q, k, v, go, rg)):
                assert_flash_rule(a, r, s, f"E={E} causal={causal} grad", sc)


def test_matches_torch_sdpa():
    q, k, v = make_qkv(2, 4, 100, 150, 32, 32)
    for kwargs in [{}, dict(is_causal=True), dict(scale=0.3), dict(attn_mask=torch.rand(100, 150) > 0.2),
                   dict(attn_mask=torch.randn(2, 1, 100, 150), is_causal=True)]:
        torch.testing.assert_close(sdpa(q, k, v, **kwargs), F.scaled_dot_product_attention(q, k, v, **kwargs),
                                   rtol=2e-5, atol=2e-6, msg=str(kwargs))


# ---- masks, causal, GQA, scale, strides ------------------------------------------------------


def mask_variants(b, h, L, S, dtype=torch.float64):
    yield "bool (L,S)", torch.rand(L, S) > 0.3
    yield "bool key padding (B,1,1,S)", torch.rand(b, 1, 1, S) > 0.3
    yield "bool per head (B,H,L,S)", torch.rand(b, h, L, S) > 0.4
    yield "bool (L,1)", torch.rand(L, 1) > 0.2
    yield "float (L,S)", torch.randn(L, S, dtype=dtype)
    yield "float (H,L,S) with -inf", torch.randn(h, L, S, dtype=dtype).masked_fill(torch.rand(h, L, S) < 0.3,
                                                                                    float("-inf"))
    yield "float (B,1,L,1)", torch.randn(b, 1, L, 1, dtype=dtype)
    yield "float (S,)", torch.randn(S, dtype=dtype)


@pytest.mark.parametrize("causal", [False, True])
def test_masks_of_every_kind(isa, causal):
    b, h, L, S, E = 2, 3, 9, 13, 5
    q, k, v = make_qkv(b, h, L, S, E, E, dtype=torch.float64)
    go = torch.randn(b, h, L, E, dtype=torch.float64)
    for name, m in mask_variants(b, h, L, S):
        out, g = grads(lambda *t: sdpa(*t, attn_mask=m, is_causal=causal), (q, k, v), go)
        ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, attn_mask=m, is_causal=causal),
                        (q, k, v), go)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10, msg=name)
        for a, r in zip(g, rg):
            torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10, msg=f"grad {name}")
        assert not out.isnan().any(), name


@pytest.mark.parametrize("L,S", [(7, 3), (3, 7), (1, 9), (9, 1), (600, 40), (40, 600)])
def test_causal_with_l_not_s_follows_torch(L, S):
    q, k, v = make_qkv(1, 2, L, S, 8, 8)
    out = sdpa(q, k, v, is_causal=True)
    torch.testing.assert_close(out, math_sdpa(q, k, v, is_causal=True), rtol=2e-5, atol=2e-6)
    # and the convention explicitly: key j is visible to query i iff j <= i
    explicit = torch.ones(L, S, dtype=torch.bool).tril()
    torch.testing.assert_close(out, sdpa(q, k, v, attn_mask=explicit), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_causal_diagonal_blocks(isa, dtype):
    # The causal kernels cut the work on the diagonal per panel of queries (forward: each panel
    # stops at its last query's key; backward: panels before the diagonal and keys past the
    # block's last query are skipped): L and S off every block and panel size (32 / 128 query
    # rows, 126 / 252 keys on avx512; other sizes on the other paths), S > L and S < L.
    gen = torch.Generator().manual_seed(11)
    for L, S in [(130, 130), (161, 300), (300, 161), (257, 509), (509, 257), (33, 260), (260, 31)]:
        q, k, v = (torch.randn(1, 2, n, e, dtype=dtype, generator=gen) for n, e in [(L, 16), (S, 16), (S, 5)])
        q = q * 3  # sharper softmax
        go = torch.randn(1, 2, L, 5, dtype=dtype, generator=gen)
        out, g = grads(lambda *t: sdpa(*t, is_causal=True), (q, k, v), go)
        ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, is_causal=True), (q, k, v), go)
        tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
        torch.testing.assert_close(out.double(), ref, **tol, msg=f"{isa} {dtype} L={L} S={S}")
        for name, a, r in zip("qkv", g, rg):
            torch.testing.assert_close(a.double(), r, **tol, msg=f"{isa} {dtype} L={L} S={S} grad {name}")


def test_forward_with_a_shared_kv_head():
    # Where every thread's own packed copy of a kv head would be large (threads x S x (E + Ev)
    # floats > 8 MiB), the forward packs each kv head once for the whole team and shares it:
    # S = 8192, E = Ev = 128 with 2 threads, GQA (2 query heads per kv head), causal and not.
    gen = torch.Generator().manual_seed(12)
    q = torch.randn(1, 2, 1100, 128, generator=gen)
    k, v = torch.randn(1, 1, 8192, 128, generator=gen), torch.randn(1, 1, 8192, 128, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for causal in (False, True):
            out = sdpa(q, k, v, is_causal=causal, enable_gqa=True)
            ref = reference.scaled_dot_product_attention(q, k.expand(1, 2, -1, -1), v.expand(1, 2, -1, -1),
                                                         is_causal=causal)
            torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5, msg=f"causal={causal}")
    finally:
        torch.set_num_threads(threads)


def test_grouped_query_attention(isa):
    q, k, v = make_qkv(2, 6, 11, 17, 8, 8, dtype=torch.float64, hkv=2)
    go = torch.randn(2, 6, 11, 8, dtype=torch.float64)
    for causal in (False, True):
        out, g = grads(lambda *t: sdpa(*t, is_causal=causal, enable_gqa=True), (q, k, v), go)
        ref, rg = grads(lambda *t: F.scaled_dot_product_attention(*t, is_causal=causal, enable_gqa=True),
                        (q, k, v), go)
        torch.testing.assert_close(out, ref)
        for a, r in zip(g, rg):
            torch.testing.assert_close(a, r)
    # one key/value head for all query heads, and a 3-D (heads, L, E) input
    q3, k3, v3 = torch.randn(4, 5, 8), torch.randn(1, 6, 8), torch.randn(1, 6, 3)
    torch.testing.assert_close(sdpa(q3, k3, v3, enable_gqa=True),
                               F.scaled_dot_product_attention(q3, k3, v3, enable_gqa=True))


def test_custom_scale_and_broadcast_batch():
    q = torch.randn(3, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 6, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    out = sdpa(q, k, v, scale=0.7)
    assert out.shape == (3, 2, 5, 4)
    ref = reference.scaled_dot_product_attention(q, k, v, scale=0.7)
    torch.testing.assert_close(out, ref)
    go = torch.randn_like(out)
    for a, r in zip(torch.autograd.grad(out, (q, k, v), go), torch.autograd.grad(ref, (q, k, v), go)):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r)
    x = torch.randn(5, 8)  # 2-D inputs: no batch at all
    torch.testing.assert_close(sdpa(x, x, x), F.scaled_dot_product_attention(x, x, x))


def test_non_contiguous_inputs(isa):
    # The views MultiheadAttention makes: (L, N, H, E) projections permuted to (N, H, L, E), and
    # a strided last dimension (copied by the binding).
    L, S, N, H, E = 19, 23, 2, 3, 8
    q = torch.randn(L, N, H * E).view(L, N, H, E).permute(1, 2, 0, 3)
    kv = torch.randn(S, N, 2 * H * E)
    k = kv[..., : H * E].view(S, N, H, E).permute(1, 2, 0, 3)
    v = torch.randn(N, H, S, 2 * E)[..., ::2]
    assert not q.is_contiguous() and not k.is_contiguous() and v.stride(-1) == 2
    go = torch.randn(N, H, L, E).transpose(0, 1).contiguous().transpose(0, 1)
    out, g = grads(lambda *t: sdpa(*t, is_causal=True), (q, k, v), go)
    ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, is_causal=True), (q, k, v), go)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
    for a, r in zip(g, rg):
        torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=1e-5)


# ---- edge cases ------------------------------------------------------------------------------


def test_fully_masked_rows_give_zeros(isa):
    # Rows that see no key: a bool row of False, a float row of -inf, and S == 0. bigmodel's
    # choice: zero output and zero gradients, never NaN.
    q, k, v = make_qkv(2, 2, 6, 9, 4, 4, dtype=torch.float64)
    mb = torch.rand(6, 9) > 0.3
    mb[2] = False
    mf = torch.zeros(2, 1, 6, 9, dtype=torch.float64)
    mf[1, 0, 4] = float("-inf")
    for m, rows in [(mb, (slice(None), slice(None), 2)), (mf, (1, slice(None), 4))]:
        qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
        out = sdpa(qq, kk, vv, attn_mask=m)
        assert torch.equal(out[rows], torch.zeros_like(out[rows]))
        assert not out.isnan().any()
        torch.testing.assert_close(out, reference.scaled_dot_product_attention(q, k, v, attn_mask=m))
        gq, gk, gv = torch.autograd.grad(out, (qq, kk, vv), torch.randn_like(out))
        assert torch.equal(gq[rows], torch.zeros_like(gq[rows]))
        assert not (gq.isnan().any() or gk.isnan().any() or gv.isnan().any())
    out = sdpa(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 0, 4), torch.randn(1, 2, 0, 3))
    assert out.shape == (1, 2, 5, 3) and torch.equal(out, torch.zeros_like(out))


def test_empty_and_degenerate_sizes():
    for shape_q, shape_k in [((0, 2, 5, 4), (0, 2, 3, 4)), ((1, 2, 0, 4), (1, 2, 3, 4))]:
        q = torch.randn(shape_q, requires_grad=True)
        k = torch.randn(shape_k, requires_grad=True)
        v = torch.randn(shape_k, requires_grad=True)
        out = sdpa(q, k, v)
        assert out.shape == F.scaled_dot_product_attention(q, k, v).shape
        gq, gk, gv = torch.autograd.grad(out.sum(), (q, k, v), allow_unused=True)
        assert gq.shape == q.shape and torch.equal(gk, torch.zeros_like(k))
    # head dim 0: every score is 0, the output is the mean of the values (as torch)
    q, k, v = torch.randn(1, 1, 3, 0), torch.randn(1, 1, 4, 0), torch.randn(1, 1, 4, 2)
    torch.testing.assert_close(sdpa(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_outliers_and_large_logits():
    # Logits up to ~1e4 apart: only the online max keeps exp() finite.
    q, k, v = make_qkv(1, 2, 50, 700, 16, 16)
    q[0, 0, 3] *= 300.0
    k[0, 1, 650] *= 200.0
    out = sdpa(q, k, v)
    ref = reference.scaled_dot_product_attention(q, k, v)
    assert torch.isfinite(out).all()
    assert_flash_rule(out, ref, math_sdpa(q, k, v), "outliers")


# ---- dropout ---------------------------------------------------------------------------------


def test_dropout_is_deterministic_and_matches_its_mask(isa):
    q, k, v = make_qkv(2, 3, 20, 530, 8, 8, dtype=torch.float64)
    torch.manual_seed(7)
    a = sdpa(q, k, v, dropout_p=0.3)
    torch.manual_seed(7)
    b = sdpa(q, k, v, dropout_p=0.3)
    c = sdpa(q, k, v, dropout_p=0.3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    seed = torch.tensor(1234)
    keep = dropout_keep_mask(seed, 6, 20, 530, 0.3).view(2, 3, 20, 530)
    assert abs(keep.double().mean().item() - 0.7) < 0.01
    go = torch.randn(2, 3, 20, 8, dtype=torch.float64)
    for causal in (False, True):
        fn = lambda *t: scaled_dot_product_attention_with_seed(*t, None, 0.3, causal, None, False, seed)  # noqa: E731
        out, g = grads(fn, (q, k, v), go)
        ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, dropout_p=0.3, is_causal=causal,
                                                                          dropout_mask=keep), (q, k, v), go)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
        for x, r in zip(g, rg):  # the backward regenerates exactly the forward's mask
            torch.testing.assert_close(x, r, rtol=1e-10, atol=1e-10)
    ones = sdpa(q, k, v, dropout_p=1.0)
    assert torch.equal(ones, torch.zeros_like(ones))


def test_gradcheck_float64():
    torch.manual_seed(3)
    q, k, v = (t.requires_grad_(True) for t in make_qkv(1, 2, 3, 5, 3, 2, dtype=torch.float64))
    m = torch.randn(3, 5, dtype=torch.float64)
    mb = torch.tensor([[True, False, True, True, False]] * 3)
    seed = torch.tensor(99)
    assert torch.autograd.gradcheck(lambda *t: sdpa(*t, attn_mask=m, is_causal=True), (q, k, v))
    assert torch.autograd.gradcheck(lambda *t: sdpa(*t, attn_mask=mb, scale=0.4), (q, k, v))
    assert torch.autograd.gradcheck(
        lambda *t: scaled_dot_product_attention_with_seed(*t, None, 0.4, False, None, False, seed), (q, k, v))
    k2, v2 = (t.detach()[:, :1].clone().requires_grad_(True) for t in (k, v))
    assert torch.autograd.gradcheck(lambda *t: sdpa(*t, enable_gqa=True), (q, k2, v2))


def _opcheck_samples():
    q, k, v = make_qkv(2, 2, 5, 7, 4, 3)
    qg, kg, vg = make_qkv(1, 4, 5, 6, 4, 4, hkv=2)
    seed = torch.tensor(5)
    return [
        (q, k, v, None, 0.0, False, None, False, None),
        (q, k, v, torch.rand(5, 7) > 0.5, 0.0, True, 0.5, False, None),
        (q, k, v, torch.randn(2, 1, 5, 7), 0.2, False, None, False, seed),
        (qg, kg, vg, None, 0.0, True, None, True, None),
        (q[:, :, :, :1].expand(2, 2, 5, 4), k.transpose(0, 1), v, None, 0.0, False, None, False, None),
    ]


@pytest.mark.parametrize("idx", range(5))
def test_opcheck(idx):
    args = list(_opcheck_samples()[idx])
    for i in range(3):
        args[i] = args[i].detach().clone().requires_grad_(True) if idx != 4 else args[i]
    torch.library.opcheck(torch.ops.bigmodel.scaled_dot_product_attention_forward.default, tuple(args))


def test_opcheck_backward_op():
    q, k, v = make_qkv(1, 2, 5, 6, 4, 3, dtype=torch.float64)
    out, lse = torch.ops.bigmodel.scaled_dot_product_attention_forward(q, k, v, None, 0.0, True, None, False, None)
    torch.library.opcheck(torch.ops.bigmodel.scaled_dot_product_attention_backward.default,
                          (torch.randn_like(out), q, k, v, out, lse, None, 0.0, True, None, False, None))
    torch.library.opcheck(torch.ops.bigmodel.attention_dropout_mask.default, (torch.tensor(3), 2, 3, 4, 0.5))


# ---- modules, convert, torch.compile ---------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_matches_torch(batch_first):
    torch.manual_seed(0)
    E, H, L, S, N = 16, 4, 7, 9, 3
    for extra in [{}, dict(kdim=12, vdim=10), dict(add_bias_kv=True, add_zero_attn=True), dict(bias=False)]:
        ours = bigmodel.nn.MultiheadAttention(E, H, batch_first=batch_first, **extra).eval()
        theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, **extra).eval()
        theirs.load_state_dict(ours.state_dict())
        assert list(ours.state_dict()) == list(theirs.state_dict())
        shape = (lambda n, l, e: (n, l, e)) if batch_first else (lambda n, l, e: (l, n, e))
        x = torch.randn(shape(N, L, E))
        kx = torch.randn(shape(N, S, extra.get("kdim", E)))
        vx = torch.randn(shape(N, S, extra.get("vdim", E)))
        kpm = torch.zeros(N, S, dtype=torch.bool)
        kpm[0, -3:] = True
        am = torch.randn(L, S)
        for kwargs in [dict(need_weights=False), dict(key_padding_mask=kpm), dict(attn_mask=am, need_weights=True),
                       dict(attn_mask=am > 0.5, average_attn_weights=False), dict(key_padding_mask=kpm.float() * -1e4)]:
            if extra.get("add_bias_kv") and "attn_mask" in kwargs and kwargs["attn_mask"].dtype == torch.bool:
                continue
            o, w = ours(x, kx, vx, **kwargs)
            ro, rw = theirs(x, kx, vx, **kwargs)
            torch.testing.assert_close(o, ro, rtol=1e-5, atol=1e-5, msg=f"{extra} {kwargs}")
            if rw is None:
                assert w is None
            else:
                torch.testing.assert_close(w, rw, rtol=1e-5, atol=1e-6, msg=f"weights {extra} {kwargs}")


def test_multihead_attention_causal_unbatched_and_grads():
    torch.manual_seed(1)
    ours = bigmodel.nn.MultiheadAttention(12, 3)
    theirs = torch.nn.MultiheadAttention(12, 3)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(10, 2, 12)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(10)
    o, _ = ours(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)
    ro, _ = theirs(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)
    torch.testing.assert_close(o, ro, rtol=1e-5, atol=1e-5)
    o.sum().backward()
    ro.sum().backward()
    for (n, p), (_, rp) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(p.grad, rp.grad, rtol=1e-4, atol=1e-5, msg=n)
    xu = torch.randn(6, 12)  # unbatched
    torch.testing.assert_close(ours(xu, xu, xu)[0], theirs(xu, xu, xu)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        ours(x, x, x, is_causal=True)


def test_multihead_attention_dropout_weights_consistent():
    # need_weights=True in training returns the dropped-out weights the kernel used.
    torch.manual_seed(2)
    m = bigmodel.nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True).train()
    x = torch.randn(2, 5, 8)
    out, w = m(x, x, x, average_attn_weights=False)
    q, k, v = torch.nn.functional.linear(x, m.in_proj_weight, m.in_proj_bias).chunk(3, -1)
    v = v.view(2, 5, 2, 4).transpose(1, 2)
    attn = torch.matmul(w, v).transpose(1, 2).reshape(2, 5, 8)
    torch.testing.assert_close(out, m.out_proj(attn), rtol=1e-5, atol=1e-5)
    assert (w == 0).any()


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ours = bigmodel.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert type(ours.self_attn) is bigmodel.nn.MultiheadAttention
    x = torch.randn(3, 11, 16)
    kpm = torch.zeros(3, 11, dtype=torch.bool)
    kpm[1, 7:] = True
    causal = torch.nn.Transformer.generate_square_subsequent_mask(11)
    for kwargs in [{}, dict(src_key_padding_mask=kpm), dict(src_mask=causal, is_causal=True)]:
        torch.testing.assert_close(ours(x, **kwargs), theirs(x, **kwargs), rtol=1e-5, atol=1e-5, msg=str(kwargs))
    ours.eval()
    theirs.eval()
    with torch.no_grad():  # torch would take its fused fast path here; ours never does
        torch.testing.assert_close(ours(x, src_key_padding_mask=kpm), theirs(x, src_key_padding_mask=kpm),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_convert_swaps_attention_layers():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    x = torch.randn(2, 6, 8)
    kpm = torch.zeros(2, 6, dtype=torch.bool)
    kpm[0, 4:] = True
    with torch.no_grad():
        before = model(x, src_key_padding_mask=kpm)
    weight = model.layers[0].self_attn.in_proj_weight
    model = bigmodel.nn.convert(model)  # the top-level module is returned swapped
    assert type(model) is bigmodel.nn.TransformerEncoder
    assert type(model.layers[0]) is bigmodel.nn.TransformerEncoderLayer
    assert type(model.layers[1].self_attn) is bigmodel.nn.MultiheadAttention
    assert model.layers[0].self_attn.in_proj_weight is weight
    with torch.no_grad():
        after = model(x, src_key_padding_mask=kpm)
    # torch's nested path leaves padded rows at 0; compare the real tokens
    torch.testing.assert_close(after[~kpm], before[~kpm], rtol=1e-5, atol=1e-5)


def test_torch_compile_through_small_transformer():
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(6, 16)
            self.layer = bigmodel.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x, mask):
            h = self.layer(self.embed(x), src_key_padding_mask=mask)
            q = h.view(h.shape[0], h.shape[1], 2, 8).transpose(1, 2)
            h2 = ops.scaled_dot_product_attention(q, q, q, is_causal=True).transpose(1, 2).reshape(h.shape)
            return self.head(h2).mean(1)

    model = Tiny()
    x = torch.randn(3, 9, 6, requires_grad=True)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[2, 6:] = True
    eager = model(x, mask)
    g_eager = torch.autograd.grad(eager.sum(), [x, *model.parameters()])
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x, mask)
    g_comp = torch.autograd.grad(out.sum(), [x, *model.parameters()])
    torch.testing.assert_close(out, eager)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b)


# ---- bad input -------------------------------------------------------------------------------

_q, _k, _v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8)

BAD_INPUTS = [
    (lambda: sdpa(_q, torch.randn(2, 4, 7, 6), _v), ValueError,
     "query and key must have the same head dim (last dimension), got 8 for query"),
    (lambda: sdpa(_q, _k, torch.randn(2, 4, 6, 8)), ValueError, "key and value must have the same sequence length"),
    (lambda: sdpa(_q, _k, _v, attn_mask=torch.ones(5, 6, dtype=torch.bool)), ValueError,
     "attn_mask of shape [5, 6] cannot be broadcast to the attention shape [2, 4, 5, 7]"),
    (lambda: sdpa(_q, _k, _v, attn_mask=torch.ones(3, 4, 5, 7)), ValueError, "cannot be broadcast"),
    (lambda: sdpa(_q, _k, _v, attn_mask=torch.ones(5, 7, dtype=torch.int32)), TypeError,
     "attn_mask must be bool or have the query's dtype (Float), got Int"),
    (lambda: sdpa(_q, _k, _v, attn_mask=torch.ones(5, 7, dtype=torch.float64)), TypeError,
     "attn_mask must be bool or have the query's dtype"),
    (lambda: sdpa(torch.randn(2, 6, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8), enable_gqa=True),
     ValueError, "needs the number of query heads to be a multiple of the number of key/value heads, got 6 query "
                 "heads and 4"),
    (lambda: sdpa(torch.randn(2, 6, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)), ValueError,
     "pass enable_gqa=True"),
    (lambda: sdpa(_q, _k, torch.randn(2, 3, 7, 8), enable_gqa=True), ValueError,
     "key and value must have the same number of heads"),
    (lambda: sdpa(torch.randn(5, 8), torch.randn(7, 8), torch.randn(7, 8), enable_gqa=True), ValueError,
     "with a head dimension (enable_gqa=True), got a 2-D tensor"),
    (lambda: sdpa(torch.randn(8), _k, _v), ValueError, "query must have shape (..., L, E), got a 1-D tensor"),
    (lambda: sdpa(_q.int(), _k.int(), _v.int()), TypeError, "query must be float32 or float64 on CPU, got Int"),
    (lambda: sdpa(_q, _k.double(), _v), TypeError, "key has dtype Double but query has dtype Float"),
    (lambda: sdpa(_q.half(), _k.half(), _v.half()), TypeError, "float32 or float64 on CPU"),
    (lambda: sdpa(_q, _k, _v, dropout_p=1.5), ValueError, "dropout_p must be in [0, 1], got 1.5"),
    (lambda: sdpa(_q, _k, _v, dropout_p="x"), TypeError, "dropout_p must be a float"),
    (lambda: sdpa(_q, _k, _v, is_causal=1), TypeError, "is_causal must be a bool"),
    (lambda: sdpa(_q, _k, _v, attn_mask=torch.randn(5, 7, requires_grad=True)), NotImplementedError,
     "gradients with respect to attn_mask are not supported"),
    (lambda: torch.ops.bigmodel.scaled_dot_product_attention_forward(_q, _k, _v, None, 0.5, False, None, False, None),
     ValueError, "dropout_p > 0 needs a dropout_seed"),
    (lambda: torch.ops.bigmodel.scaled_dot_product_attention_backward(
        torch.randn(2, 4, 5, 7), _q, _k, _v, torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5), None, 0.0, False, None,
        False, None), ValueError, "grad_output has shape [2, 4, 5, 7] but the forward output has shape [2, 4, 5, 8]"),
    (lambda: torch.ops.bigmodel.scaled_dot_product_attention_backward(
        torch.randn(2, 4, 5, 8), _q, _k, _v, torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5).double(), None, 0.0,
        False, None, False, None), TypeError, "logsumexp must be Float, got Double"),
]


@pytest.mark.parametrize("call,exc,fragment", BAD_INPUTS)
def test_bad_input_raises_clear_error(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


# ---- CUDA ------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_reference(dtype):
    # flash-attention's rule against torch's math implementation at the same precision.
    rng = random.Random(f"cuda-{dtype}")
    for i in range(8):
        b, h, L, S, E, Ev = random_case(rng, big=i >= 5)
        causal = i % 2 == 1
        q, k, v = (t.cuda().to(dtype) for t in make_qkv(b, h, L, S, E, Ev, outliers=i == 0))
        m = None
        if i % 3 == 2:
            m = torch.rand(L, S, device="cuda") > 0.2
            m[:, 0] = True  # no fully masked rows here: torch's math path would give NaN
        go = torch.randn(b, h, L, Ev, device="cuda", dtype=dtype)
        out, g = grads(lambda *t: sdpa(*t, attn_mask=m, is_causal=causal), (q, k, v), go)
        ref, rg = ref_grads(lambda *t: reference.scaled_dot_product_attention(*t, attn_mask=m, is_causal=causal),
                            (q, k, v), go)
        same, sg = grads(lambda *t: math_sdpa(*t, attn_mask=m, is_causal=causal), (q, k, v), go)
        what = f"cuda {dtype} {(b, h, L, S, E, Ev)} causal={causal}"
        assert_flash_rule(out, ref, same, what)
        for name, a, r, s, sc in zip("qkv", g, rg, sg, grad_scales(q.float(), k.float(), v.float(), go.float(), rg)):
            assert_flash_rule(a, r, s, f"{what} grad {name}", sc)


@pytest.mark.cuda
def test_cuda_gqa_dropout_and_masks_match_cpu():
    q, k, v = make_qkv(2, 4, 33, 70, 16, 16, hkv=2)
    seed = torch.tensor(77)
    m = torch.randn(2, 1, 33, 70)
    for causal in (False, True):
        go = torch.randn(2, 4, 33, 16)
        out_c, g_c = grads(lambda *t: scaled_dot_product_attention_with_seed(*t, m, 0.25, causal, None, True, seed),
                           (q, k, v), go)
        out_g, g_g = grads(lambda *t: scaled_dot_product_attention_with_seed(*t, m.cuda(), 0.25, causal, None, True,
                                                                             seed), (q.cuda(), k.cuda(), v.cuda()),
                           go.cuda())
        torch.testing.assert_close(out_g.cpu(), out_c, rtol=1e-4, atol=1e-5)
        for a, b in zip(g_g, g_c):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
def test_cuda_fully_masked_rows_and_bad_head_dim():
    q, k, v = (t.cuda() for t in make_qkv(1, 2, 4, 6, 8, 8))
    m = torch.ones(4, 6, dtype=torch.bool, device="cuda")
    m[1] = False
    out = sdpa(q, k, v, attn_mask=m)
    assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1])) and not out.isnan().any()
    with pytest.raises(ValueError, match="head dims up to 256"):
        sdpa(torch.randn(1, 1, 4, 300, device="cuda"), torch.randn(1, 1, 4, 300, device="cuda"),
             torch.randn(1, 1, 4, 300, device="cuda"))
