"""Property-based tests (hypothesis) for lstm and lstm_cell: any valid draw of T / B / I / H (0
where torch allows it), dtype, hx (given or None), bias, reverse, lengths, non-contiguous inputs
and ISA path matches bigmodel/reference.py in the outputs and in every gradient; any invalid draw
raises ValueError / TypeError naming the op, never a crash. Profiles: see tests/properties.py."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

import bigmodel
from bigmodel import ops, reference

from properties import LAYOUTS, f32_or_f64, make_layout, seeds  # noqa: E402

F32 = dict(rtol=1e-4, atol=2e-5)
F64 = dict(rtol=1e-9, atol=1e-11)
isas = st.sampled_from(bigmodel.available_isas())
dtypes = st.sampled_from([torch.float32, torch.float64])
layouts = st.sampled_from(LAYOUTS)


def _weights(I, H, dtype, bias, g, layout):
    w_ih = make_layout((4 * H, I), dtype, layout, g, -0.5, 0.5)
    w_hh = make_layout((4 * H, H), dtype, layout, g, -0.5, 0.5)
    b = [make_layout((4 * H,), dtype, "contiguous", g), make_layout((4 * H,), dtype, "contiguous", g)] if bias else []
    return [w_ih, w_hh, *b]


def _check_grads(fn, ref_fn, inputs, outs, g, tol):
    """Gradients of sum(out_i * gy_i) over every output, ours against the reference."""
    gys = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]
    live = [t for t in inputs if t.requires_grad]
    got = torch.autograd.grad(outs, live, gys, allow_unused=True)
    xs = [t.detach().double().requires_grad_(t.requires_grad) for t in inputs]
    ref_outs = ref_fn(xs)
    pairs = [(r, gy.double()) for r, gy in zip(ref_outs, gys) if r.requires_grad]  # T = 0: zeros, no graph
    if pairs:
        torch.autograd.backward([r for r, _ in pairs], [gy for _, gy in pairs])
    want = [x.grad if x.grad is not None else torch.zeros_like(x) for x in xs if x.requires_grad]
    for i, (a, b) in enumerate(zip(got, want)):
        if a is None:
            assert not b.any(), f"gradient {i} missing"
            continue
        torch.testing.assert_close(a.double(), b, **tol, msg=lambda m, i=i: f"grad {i}: {m}")


@given(T=st.integers(0, 6), B=st.integers(0, 5), I=st.integers(0, 20), H=st.integers(1, 24), dtype=dtypes,
       bias=st.booleans(), with_hx=st.booleans(), reverse=st.booleans(), use_lengths=st.booleans(),
       lx=layouts, lw=layouts, g=seeds(), isa=isas)
def test_lstm_property(T, B, I, H, dtype, bias, with_hx, reverse, use_lengths, lx, lw, g, isa):
    x = make_layout((T, B, I), dtype, lx, g)
    w = _weights(I, H, dtype, bias, g, lw)
    hx = [make_layout((B, H), dtype, "contiguous", g) for _ in range(2)] if with_hx else []
    lengths = None
    if use_lengths and not reverse:
        lengths = torch.sort(torch.randint(0, T + 1, (B,), generator=g), descending=True).values
    tol = f32_or_f64(dtype, F32, F64)
    with bigmodel.use_isa(isa):
        inputs = [t.detach().requires_grad_(True) for t in [x, *hx, *w]]
        xi, hxi, wi = inputs[0], inputs[1:1 + len(hx)], inputs[1 + len(hx):]
        out, (h_n, c_n) = ops.lstm(xi, tuple(hxi) if with_hx else None, *wi, reverse=reverse, lengths=lengths)
        r_out, (r_h, r_c) = reference.lstm(x, tuple(hx) if with_hx else None, *w, reverse=reverse, lengths=lengths)
        for a, b in ((out, r_out), (h_n, r_h), (c_n, r_c)):
            assert a.shape == b.shape and a.dtype == dtype
            torch.testing.assert_close(a.double(), b, **tol)

        def ref_fn(xs):
            o, (h, c) = reference.lstm(xs[0], tuple(xs[1:1 + len(hx)]) if with_hx else None, *xs[1 + len(hx):],
                                       reverse=reverse, lengths=lengths)
            return [o, h, c]

        if out.numel() or h_n.numel():
            _check_grads(None, ref_fn, inputs, [out, h_n, c_n], g, tol)


@given(B=st.integers(0, 5), I=st.integers(0, 20), H=st.integers(1, 24), dtype=dtypes, bias=st.booleans(),
       with_hx=st.booleans(), batched=st.booleans(), lx=layouts, lw=layouts, g=seeds(), isa=isas)
def test_lstm_cell_property(B, I, H, dtype, bias, with_hx, batched, lx, lw, g, isa):
    shape = (B, I) if batched else (I,)
    hshape = (B, H) if batched else (H,)
    x = make_layout(shape, dtype, lx, g)
    w = _weights(I, H, dtype, bias, g, lw)
    hx = [make_layout(hshape, dtype, "contiguous", g) for _ in range(2)] if with_hx else []
    tol = f32_or_f64(dtype, F32, F64)
    with bigmodel.use_isa(isa):
        inputs = [t.detach().requires_grad_(True) for t in [x, *hx, *w]]
        xi, hxi, wi = inputs[0], inputs[1:1 + len(hx)], inputs[1 + len(hx):]
        h1, c1 = ops.lstm_cell(xi, tuple(hxi) if with_hx else None, *wi)
        rh, rc = reference.lstm_cell(x, tuple(hx) if with_hx else None, *w)
        assert h1.shape == rh.shape == hshape
        torch.testing.assert_close(h1.double(), rh, **tol)
        torch.testing.assert_close(c1.double(), rc, **tol)

        def ref_fn(xs):
            return list(reference.lstm_cell(xs[0], tuple(xs[1:1 + len(hx)]) if with_hx else None, *xs[1 + len(hx):]))

        if h1.numel():
            _check_grads(None, ref_fn, inputs, [h1, c1], g, tol)


# ---- invalid arguments ----------------------------------------------------------------------

shape_lists = st.lists(st.integers(0, 4), min_size=0, max_size=4)
bad_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64])


@given(sx=shape_lists, sh=shape_lists, sc=shape_lists, swih=shape_lists, swhh=shape_lists,
       sb=st.one_of(st.none(), shape_lists), dx=bad_dtypes, dw=bad_dtypes, which=st.sampled_from(["lstm", "lstm_cell"]),
       lengths=st.one_of(st.none(), st.lists(st.integers(-1, 5), min_size=0, max_size=4)), reverse=st.booleans())
def test_lstm_bad_arguments_never_crash(sx, sh, sc, swih, swhh, sb, dx, dw, which, lengths, reverse):
    x = torch.zeros(sx, dtype=dx)
    hx = (torch.zeros(sh, dtype=dx), torch.zeros(sc, dtype=dx))
    w_ih, w_hh = torch.zeros(swih, dtype=dw), torch.zeros(swhh, dtype=dw)
    b = None if sb is None else torch.zeros(sb, dtype=dw)
    try:
        if which == "lstm":
            ops.lstm(x, hx, w_ih, w_hh, b, b, reverse=reverse,
                     lengths=None if lengths is None else torch.tensor(lengths, dtype=torch.int64))
        else:
            ops.lstm_cell(x, hx, w_ih, w_hh, b, b)
    except (ValueError, TypeError) as e:
        assert str(e).startswith(f"{which}: "), f"message does not name {which}: {e}"
    except IndexError as e:
        raise AssertionError(f"{which} raised IndexError instead of a ValueError naming the argument: {e}")
