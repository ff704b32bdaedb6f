"""Property-based tests (hypothesis) for scaled_dot_product_attention: any valid draw of batch
dimensions (none, one, two, broadcast), heads (GQA with enable_gqa), L / S (1 and odd), head dims
E / Ev (odd), layouts (contiguous, strided, heads-interleaved views), dtype, mask (none, bool,
additive, broadcast; fully masked rows), is_causal (also L != S), scale, dropout_p (with the
kernel's own keep mask) and ISA path matches bigmodel/reference.py in the output and the three
gradients; any invalid draw raises ValueError / TypeError naming the op, never a crash.
Profiles: see tests/properties.py."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

import bigmodel
from bigmodel import ops, reference
from bigmodel.ops.attention import dropout_keep_mask, scaled_dot_product_attention_with_seed

from properties import f32_or_f64, seeds  # noqa: E402

F32 = dict(rtol=2e-4, atol=2e-5)
F64 = dict(rtol=1e-10, atol=1e-10)


def f32_grad_tol(scale, E, dropout, rows):
    """The family's float32 gradient tolerance (tests/attention/test_attention.py: 1e-5), scaled by what
    multiplies dS (the softmax scale, the dropout factor 1 / (1 - p)) and by the square root of
    the number of query rows summed into one dK / dV row. Found by the long profile (Hq=4, Hkv=2,
    L=32, S=1, scale 2, dropout 0.25: 2.2e-5; Hq=3, Hkv=1, L=13, S=1: 1.4e-5): with S = 1,
    grad_key is exactly 0 in exact arithmetic, since dS = P (dP - D) cancels, and float32 leaves
    rounding residue summed over the rows. Not a kernel error: dP is a float32 GEMM and
    D = rowsum(dO * O) of the float32 output."""
    s = scale if scale is not None else E ** -0.5
    keep = 1.0 / (1.0 - dropout) if dropout < 1 else 1.0
    return dict(rtol=1e-4, atol=1e-5 * max(1.0, s) * keep * max(1.0, rows / 8) ** 0.5)
OP = "scaled_dot_product_attention"


def _tensor(shape, dtype, layout, g):
    """(..., H, R, D) with the last dim contiguous: contiguous, heads interleaved ((..., R, H, D)
    memory, as a projection's output viewed per head), or rows padded."""
    shape = tuple(shape)
    if layout == "interleaved" and len(shape) >= 3:
        base = torch.randn(*shape[:-3], shape[-2], shape[-3], shape[-1], generator=g, dtype=dtype)
        return base.transpose(-2, -3)
    if layout == "padded":
        return torch.randn(*shape[:-1], shape[-1] + 5, generator=g, dtype=dtype)[..., :shape[-1]]
    return torch.randn(shape, generator=g, dtype=dtype)


@given(batch=st.lists(st.integers(1, 2), min_size=0, max_size=2), hkv=st.integers(1, 2), group=st.integers(1, 3),
       L=st.one_of(st.just(1), st.integers(2, 40)), S=st.one_of(st.just(1), st.integers(2, 48)),
       E=st.integers(1, 24), Ev=st.one_of(st.none(), st.integers(1, 20)),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       layouts=st.tuples(*[st.sampled_from(["contiguous", "interleaved", "padded"])] * 3),
       mask=st.sampled_from(["none", "bool", "additive"]), mask_bcast=st.booleans(), causal=st.booleans(),
       scale=st.one_of(st.none(), st.floats(0.05, 2.0)), dropout=st.sampled_from([0.0, 0.0, 0.25, 1.0]),
       g=seeds(), isa=st.sampled_from(bigmodel.available_isas()))
def test_sdpa_property(batch, hkv, group, L, S, E, Ev, dtype, layouts, mask, mask_bcast, causal, scale, dropout, g,
                       isa):
    hq = hkv * group
    gqa = group > 1
    Ev = E if Ev is None else Ev
    q = _tensor((*batch, hq, L, E), dtype, layouts[0], g)
    k = _tensor((*batch, hkv, S, E), dtype, layouts[1], g)
    v = _tensor((*batch, hkv, S, Ev), dtype, layouts[2], g)
    mshape = (L, S) if mask_bcast else (*batch, hq, L, S)
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(mshape, generator=g) < 0.8
        if L > 1:
            attn_mask[..., L // 2, :] = False  # a fully masked row: zeros, never NaN
    elif mask == "additive":
        attn_mask = torch.randn(mshape, generator=g, dtype=dtype) * 2
    tol = f32_or_f64(dtype, F32, F64)
    seed = torch.tensor(int(torch.randint(0, 2**62, (), generator=g)))
    bh = 1
    for d in (*batch, hq):
        bh *= d
    with bigmodel.use_isa(isa):
        inputs = [t.detach().requires_grad_(True) for t in (q, k, v)]
        if dropout > 0:
            out = scaled_dot_product_attention_with_seed(*inputs, attn_mask, dropout, causal, scale, gqa, seed)
            keep = dropout_keep_mask(seed, bh, L, S, dropout).view(*batch, hq, L, S)
        else:
            out = ops.scaled_dot_product_attention(*inputs, attn_mask=attn_mask, is_causal=causal, scale=scale,
                                                   enable_gqa=gqa)
            keep = None
        kw = dict(attn_mask=attn_mask, dropout_p=dropout, is_causal=causal, scale=scale, enable_gqa=gqa,
                  dropout_mask=keep)
        want = reference.scaled_dot_product_attention(q, k, v, **kw)
        assert out.shape == want.shape and out.dtype == dtype
        assert not out.isnan().any()
        torch.testing.assert_close(out.double(), want, **tol)
        go = torch.randn(out.shape, generator=g, dtype=dtype)
        got = torch.autograd.grad(out, inputs, go)
        ref = reference.grads(reference.scaled_dot_product_attention, [q, k, v], go, **kw)
        for name, a, b in zip("qkv", got, ref):
            assert a.shape == b.shape, name
            torch.testing.assert_close(a.double(), b, **f32_or_f64(dtype, f32_grad_tol(scale, E, dropout, group * L), F64),
                                       msg=lambda m, n=name: f"grad {n}: {m}")


# ---- invalid arguments ----------------------------------------------------------------------

shape_lists = st.lists(st.integers(0, 4), min_size=0, max_size=5)


@given(sq=shape_lists, sk=shape_lists, sv=shape_lists, sm=st.one_of(st.none(), shape_lists),
       dq=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64]),
       dkv=st.sampled_from([torch.float32, torch.float64, torch.int32]),
       mdtype=st.sampled_from([torch.bool, torch.float32, torch.float64, torch.int64]),
       dropout=st.one_of(st.floats(-1, 2), st.just(float("nan")), st.just(True), st.just("0.1")),
       causal=st.one_of(st.booleans(), st.just(1)), scale=st.one_of(st.none(), st.floats(-2, 2), st.just("x")),
       gqa=st.one_of(st.booleans(), st.just(0)))
def test_sdpa_bad_arguments_never_crash(sq, sk, sv, sm, dq, dkv, mdtype, dropout, causal, scale, gqa):
    q = torch.zeros(sq, dtype=dq)
    k, v = torch.zeros(sk, dtype=dkv), torch.zeros(sv, dtype=dkv)
    m = None if sm is None else torch.zeros(sm, dtype=mdtype)
    try:
        ops.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=dropout, is_causal=causal, scale=scale,
                                         enable_gqa=gqa)
    except (ValueError, TypeError) as e:
        assert str(e).startswith(f"{OP}"), f"message does not name the op: {e}"
