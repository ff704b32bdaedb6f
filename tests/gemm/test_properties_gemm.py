"""Property-based tests (hypothesis) for the GEMM family: matmul, gemm (alpha / beta / c), gemm_
(in place), gemm_batch_reduce, gemm_pack + gemm_prepacked. Any valid draw of shapes (0 and 1
included), layouts (contiguous, transposed, strided, offset views), dtype, ISA path and keyword
matches bigmodel/reference.py, gradients included; any invalid draw raises ValueError / TypeError
whose message names the op and the argument, never a crash. Profiles: see tests/properties.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bigmodel
from bigmodel import ops, reference

from properties import LAYOUTS, f32_or_f64, make_layout, seeds  # noqa: E402

F32 = dict(rtol=1e-4, atol=1e-4)
F64 = dict(rtol=1e-10, atol=1e-10)
sizes = st.one_of(st.sampled_from([0, 1]), st.integers(2, 48))
dtypes = st.sampled_from([torch.float32, torch.float64])
layouts = st.sampled_from(LAYOUTS)
isas = st.sampled_from(bigmodel.available_isas())
scalars = st.one_of(st.sampled_from([0.0, 1.0, -1.0]), st.floats(-2, 2, allow_nan=False))


@given(m=sizes, n=sizes, k=sizes, dtype=dtypes, la=layouts, lb=layouts, lc=layouts, g=seeds(), isa=isas,
       alpha=scalars, beta=scalars, with_c=st.booleans(), nan_c=st.booleans())
def test_gemm_property(m, n, k, dtype, la, lb, lc, g, isa, alpha, beta, with_c, nan_c):
    a = make_layout((m, k), dtype, la, g)
    b = make_layout((k, n), dtype, lb, g)
    c = make_layout((m, n), dtype, lc, g) if with_c else None
    if c is not None and nan_c and beta == 0.0:
        c = c.fill_(float("nan"))  # beta == 0 must ignore c entirely, as addmm
    tol = f32_or_f64(dtype, F32, F64)
    with bigmodel.use_isa(isa):
        out = ops.gemm(a, b, c, alpha=alpha, beta=beta)
        assert out.shape == (m, n) and out.dtype == dtype
        torch.testing.assert_close(out.double(), reference.gemm(a, b, c, alpha, beta), **tol)
        # in place: c := alpha a b + beta c
        if c is not None:
            c2 = c.clone()
            torch.ops.bigmodel.gemm_(c2, a, b, alpha=alpha, beta=beta)
            torch.testing.assert_close(c2.double(), reference.gemm(a, b, c, alpha, beta), **tol)


@given(m=sizes, n=sizes, k=sizes, dtype=dtypes, la=layouts, lb=layouts, g=seeds(), isa=isas)
def test_matmul_gradients_property(m, n, k, dtype, la, lb, g, isa):
    a = make_layout((m, k), dtype, la, g).requires_grad_(True)
    b = make_layout((k, n), dtype, lb, g).requires_grad_(True)
    tol = f32_or_f64(dtype, F32, F64)
    with bigmodel.use_isa(isa):
        out = ops.matmul(a, b)
        torch.testing.assert_close(out.double(), reference.matmul(a, b), **tol)
        gy = torch.randn(m, n, generator=g, dtype=dtype)
        ga, gb = torch.autograd.grad(out, (a, b), gy)
        ra, rb = reference.grads(reference.matmul, [a, b], gy)
        torch.testing.assert_close(ga.double(), ra, **tol)
        torch.testing.assert_close(gb.double(), rb, **tol)


@given(t=st.integers(0, 4), m=sizes, n=sizes, k=sizes, dtype=dtypes, la=layouts, lb=layouts, g=seeds(), isa=isas,
       alpha=scalars, beta=scalars, with_c=st.booleans())
def test_gemm_batch_reduce_property(t, m, n, k, dtype, la, lb, g, isa, alpha, beta, with_c):
    a = make_layout((t, m, k), dtype, la, g)
    b = make_layout((t, k, n), dtype, lb, g)
    c = make_layout((m, n), dtype, "contiguous", g) if with_c else None
    with bigmodel.use_isa(isa):
        out = ops.gemm_batch_reduce(a, b, c, alpha=alpha, beta=beta)
        torch.testing.assert_close(out.double(), reference.gemm_batch_reduce(a, b, c, alpha, beta),
                                   **f32_or_f64(dtype, F32, F64))


@given(m=sizes, n=sizes, k=sizes, dtype=dtypes, la=layouts, lb=layouts, g=seeds(), isa=isas,
       which=st.sampled_from(["a", "b", "both"]), alpha=scalars, beta=scalars, with_c=st.booleans())
def test_gemm_prepacked_property(m, n, k, dtype, la, lb, g, isa, which, alpha, beta, with_c):
    a = make_layout((m, k), dtype, la, g)
    b = make_layout((k, n), dtype, lb, g)
    c = make_layout((m, n), dtype, "contiguous", g) if with_c else None
    with bigmodel.use_isa(isa):
        pa = ops.gemm_pack(a, "a") if which in ("a", "both") else a
        pb = ops.gemm_pack(b, "b") if which in ("b", "both") else b
        out = ops.gemm_prepacked(pa, pb, c, alpha=alpha, beta=beta)
        torch.testing.assert_close(out.double(), reference.gemm(a, b, c, alpha, beta), **f32_or_f64(dtype, F32, F64))


# ---- invalid arguments ----------------------------------------------------------------------

shape_lists = st.lists(st.integers(0, 5), min_size=0, max_size=4)
bad_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool,
                              torch.complex64])


@given(sa=shape_lists, sb=shape_lists, sc=st.one_of(st.none(), shape_lists), da=bad_dtypes, db=bad_dtypes,
       which=st.sampled_from(["matmul", "gemm", "gemm_", "gemm_batch_reduce", "gemm_prepacked"]),
       alpha=st.one_of(scalars, st.just(float("nan"))))
def test_gemm_bad_arguments_never_crash(sa, sb, sc, da, db, which, alpha):
    a = torch.zeros(sa, dtype=da)
    b = torch.zeros(sb, dtype=db)
    c = None if sc is None else torch.zeros(sc, dtype=da)
    try:
        if which == "matmul":
            ops.matmul(a, b)
        elif which == "gemm":
            ops.gemm(a, b, c, alpha=alpha)
        elif which == "gemm_":
            torch.ops.bigmodel.gemm_(c if c is not None else torch.zeros(2, 2), a, b)
        elif which == "gemm_batch_reduce":
            ops.gemm_batch_reduce(a, b, c)
        else:
            ops.gemm_prepacked(a, b, c)
    except (ValueError, TypeError) as e:
        assert str(e).startswith(f"{which}: "), f"message does not name {which}: {e}"
        return
    # accepted: the draw was valid, so the result must be right
    if which in ("matmul", "gemm"):
        assert a.dtype in (torch.float32, torch.float64) and a.dim() == 2 and b.dim() == 2


@pytest.mark.parametrize("bad, match", [
    (lambda: ops.matmul(torch.zeros(2, 3), torch.zeros(4, 2)), "matmul: input has shape"),
    (lambda: ops.gemm(torch.zeros(2, 3, dtype=torch.int32), torch.zeros(3, 2, dtype=torch.int32)), "gemm: a must be float32 or float64"),
    (lambda: ops.gemm(torch.zeros(2, 3), torch.zeros(3, 2), torch.zeros(3, 3)), "gemm: c"),
])
def test_gemm_bad_argument_messages(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()
