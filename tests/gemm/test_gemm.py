"""GEMM core: bigmodel.ops.matmul / gemm and the batch-reduce, pre-packed and epilogue entries
against float64 references, on every ISA path; strides, transposes, alpha/beta, NaN in C, empty
sizes, threads, gradcheck, opcheck and bad input."""

from __future__ import annotations

import random

import pytest
import torch

import bigmodel
from bigmodel import ops, reference

ISAS = bigmodel.available_isas()
DTYPES = [torch.float32, torch.float64]
PRIMES = [1, 2, 3, 5, 7, 13, 17, 31, 61, 97, 127, 211, 257, 293]


@pytest.fixture(params=ISAS)
def isa(request):
    with bigmodel.use_isa(request.param):
        yield request.param


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in float64 (0 when both are empty or zero)."""
    a, e = actual.double(), expected.double()
    denom = e.norm().item()
    diff = (a - e).norm().item()
    return diff if denom == 0 else diff / denom


def tol(dtype) -> float:
    # The float32 bound; float64 must be at float64 precision.
    return 1e-5 if dtype == torch.float32 else 1e-12


def view(shape, kind: str, dtype, gen) -> torch.Tensor:
    """A matrix of `shape` laid out as `kind`: row-major, transposed (column-major), or a strided
    slice of a larger tensor (non-unit strides on both dimensions)."""
    r, c = shape
    if kind == "row":
        return torch.randn(r, c, dtype=dtype, generator=gen)
    if kind == "col":
        return torch.randn(c, r, dtype=dtype, generator=gen).t()
    if kind == "strided":
        return torch.randn(2 * r + 1, 3 * c + 2, dtype=dtype, generator=gen)[1::2, 2::3]
    raise ValueError(kind)


KINDS = ["row", "col", "strided"]


def random_dims(rng: random.Random):
    pick = lambda: rng.choice(PRIMES) if rng.random() < 0.5 else rng.randint(1, 300)  # noqa: E731
    return pick(), pick(), pick()


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_shapes_every_layout(isa, dtype):
    rng = random.Random(f"{isa}-{dtype}")
    gen = torch.Generator().manual_seed(rng.randint(0, 2**31))
    for _ in range(14):
        m, n, k = random_dims(rng)
        a = view((m, k), rng.choice(KINDS), dtype, gen)
        b = view((k, n), rng.choice(KINDS), dtype, gen)
        out = ops.matmul(a, b)
        assert out.shape == (m, n) and out.dtype == dtype
        err = rel_err(out, reference.matmul(a, b))
        assert err < tol(dtype), f"{isa} {dtype} M={m} N={n} K={k} strides {a.stride()} {b.stride()}: {err:.3g}"


@pytest.mark.parametrize("ka", KINDS)
@pytest.mark.parametrize("kb", KINDS)
def test_every_transpose_combination(isa, ka, kb):
    gen = torch.Generator().manual_seed(1)
    for m, n, k in [(29, 67, 131), (14, 32, 256), (1, 97, 3), (300, 1, 17)]:
        a, b = view((m, k), ka, torch.float32, gen), view((k, n), kb, torch.float32, gen)
        err = rel_err(ops.matmul(a, b), reference.matmul(a, b))
        assert err < 1e-5, f"{isa} {ka}/{kb} {m}x{n}x{k}: {err:.3g}"


@pytest.mark.parametrize("c_kind", KINDS)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (0.0, 3.0), (1.5, -1.0)])
def test_alpha_beta_inplace(isa, c_kind, alpha, beta):
    gen = torch.Generator().manual_seed(2)
    for m, n, k in [(37, 45, 50), (3, 130, 7), (64, 64, 300)]:
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        c = view((m, n), c_kind, torch.float32, gen)
        expected = reference.gemm(a, b, c.clone(), alpha=alpha, beta=beta)
        torch.ops.bigmodel.gemm_(c, a, b, alpha=alpha, beta=beta)
        assert rel_err(c, expected) < 1e-5, f"{isa} {c_kind} alpha={alpha} beta={beta} {m}x{n}x{k}"


@pytest.mark.parametrize("c_kind", KINDS)
def test_beta_zero_overwrites_nan(isa, c_kind):
    # beta == 0 must overwrite C, not multiply it: 0 * NaN would leave NaN behind.
    gen = torch.Generator().manual_seed(3)
    for m, n, k in [(20, 33, 300), (14, 32, 5), (5, 3, 0)]:
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        c = view((m, n), c_kind, torch.float32, gen).fill_(float("nan"))
        torch.ops.bigmodel.gemm_(c, a, b, alpha=1.0, beta=0.0)
        assert not c.isnan().any(), f"{isa} {c_kind} {m}x{n}x{k}: NaN survived beta=0"
        assert rel_err(c, reference.matmul(a, b)) < 1e-5
        # the functional form ignores c entirely when beta == 0, as torch.addmm does
        out = ops.gemm(a, b, torch.full((m, n), float("nan")), beta=0.0)
        assert not out.isnan().any()


def test_c_broadcasts_like_addmm(isa):
    a, b = torch.randn(6, 9), torch.randn(9, 11)
    for c in [torch.randn(11), torch.randn(1, 11), torch.randn(6, 1), torch.randn(())]:
        out = ops.gemm(a, b, c, alpha=0.5, beta=2.0)
        torch.testing.assert_close(out, torch.addmm(c, a, b, alpha=0.5, beta=2.0), rtol=1e-5, atol=1e-5)


def test_empty_and_k_zero(isa):
    for m, n, k in [(0, 5, 3), (4, 0, 3), (0, 0, 0), (4, 5, 0)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = ops.matmul(a, b)
        assert out.shape == (m, n)
        assert torch.equal(out, torch.zeros(m, n))
    # K == 0 with beta: C = beta * C
    c = torch.randn(4, 5)
    out = ops.gemm(torch.randn(4, 0), torch.randn(0, 5), c, beta=3.0)
    torch.testing.assert_close(out, 3.0 * c)


def test_threads_do_not_change_the_result(isa):
    # Each C element is owned by one thread and reduced in the same order: bitwise identical.
    a, b = torch.randn(300, 257), torch.randn(257, 301)
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.matmul(a, b)
        torch.set_num_threads(2)
        two = ops.matmul(a, b)
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(one, two)


# ---- batch-reduce and pre-packed entries ------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_reduce(isa, dtype):
    rng = random.Random(f"br-{isa}-{dtype}")
    gen = torch.Generator().manual_seed(4)
    for _ in range(6):
        t = rng.randint(1, 9)
        m, n, k = rng.randint(1, 70), rng.randint(1, 70), rng.randint(1, 40)
        a = torch.randn(t, m, k, dtype=dtype, generator=gen)
        b = torch.randn(t, n, k, dtype=dtype, generator=gen).transpose(1, 2)  # strided items
        c = torch.randn(m, n, dtype=dtype, generator=gen)
        out = ops.gemm_batch_reduce(a, b, c, alpha=0.5, beta=-1.0)
        err = rel_err(out, reference.gemm_batch_reduce(a, b, c, alpha=0.5, beta=-1.0))
        assert err < tol(dtype), f"{isa} T={t} {m}x{n}x{k}: {err:.3g}"
    # T == 0: only beta * c remains
    c = torch.randn(3, 4, dtype=dtype)
    out = ops.gemm_batch_reduce(torch.zeros(0, 3, 5, dtype=dtype), torch.zeros(0, 5, 4, dtype=dtype), c, beta=2.0)
    torch.testing.assert_close(out, 2.0 * c)


def test_batch_reduce_with_packed_operand(isa):
    # Convolution's pattern: weights of all taps packed once as one concatenated-K operand, the
    # activations supplied per tap.
    gen = torch.Generator().manual_seed(5)
    for t, m, n, k in [(9, 64, 37, 16), (1, 5, 3, 2), (4, 29, 70, 33)]:
        w = torch.randn(t, m, k, generator=gen)
        x = torch.randn(t, k, n, generator=gen)
        expected = reference.gemm_batch_reduce(w, x)
        pw = ops.gemm_pack(w, "a")
        assert rel_err(ops.gemm_batch_reduce(pw, x), expected) < 1e-5
        px = ops.gemm_pack(x, "b")
        assert rel_err(ops.gemm_batch_reduce(w, px), expected) < 1e-5
        assert rel_err(ops.gemm_batch_reduce(pw, px), expected) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_prepacked(isa, dtype):
    gen = torch.Generator().manual_seed(6)
    for m, n, k in [(64, 2048 // 8, 512 // 4), (1, 1, 1), (97, 33, 257), (15, 31, 0)]:
        w = torch.randn(n, k, dtype=dtype, generator=gen).t()  # LSTM: h @ W^T with W packed once
        pw = ops.gemm_pack(w, "b")
        assert pw.dtype == torch.uint8 and pw.numel() == bigmodel._C.gemm_packed_nbytes(
            str(dtype).replace("torch.", ""), "b", n, k)
        for step in range(2):  # reused across calls
            h = torch.randn(m, k, dtype=dtype, generator=gen)
            expected = reference.matmul(h, w)
            assert rel_err(ops.gemm_prepacked(h, pw), expected) < tol(dtype), f"{m}x{n}x{k} step {step}"
            ph = ops.gemm_pack(h, "a")
            assert rel_err(ops.gemm_prepacked(ph, w), expected) < tol(dtype)
            assert rel_err(ops.gemm_prepacked(ph, pw), expected) < tol(dtype)
        c = torch.randn(m, n, dtype=dtype, generator=gen)
        out = ops.gemm_prepacked(h, pw, c, alpha=2.0, beta=0.5)
        assert rel_err(out, reference.gemm(h, w, c, alpha=2.0, beta=0.5)) < tol(dtype)


def test_packed_buffer_is_tied_to_its_isa():
    if len(ISAS) < 2:
        pytest.skip("needs two ISA paths")
    x = torch.randn(8, 8)
    with bigmodel.use_isa(ISAS[0]):
        packed = ops.gemm_pack(x, "b")
    with bigmodel.use_isa(ISAS[1]):
        with pytest.raises(ValueError, match=f"packed for the {ISAS[0]} path but the active path is {ISAS[1]}"):
            ops.gemm_prepacked(torch.randn(3, 8), packed)


def test_packed_buffer_checks():
    x = torch.randn(8, 6)
    pb = ops.gemm_pack(x, "b")
    with pytest.raises(ValueError, match="was packed as operand 'b' but is used as operand 'a'"):
        ops.gemm_prepacked(pb, x)
    with pytest.raises(ValueError, match="not a buffer made by gemm_pack"):
        ops.gemm_prepacked(torch.randn(3, 8), torch.zeros(100, dtype=torch.uint8))
    with pytest.raises(ValueError, match="is truncated"):
        ops.gemm_prepacked(torch.randn(3, 8), pb[:-4].clone())
    with pytest.raises(ValueError, match="inner dimensions must match"):
        ops.gemm_prepacked(torch.randn(3, 7), pb)
    with pytest.raises(ValueError, match="side must be 'a' or 'b'"):
        ops.gemm_pack(x, "c")


# ---- epilogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize("single_thread", [False, True])
@pytest.mark.parametrize("c_kind", KINDS)
def test_epilogue_bias_relu_and_callback(isa, c_kind, single_thread, test_ops):
    gen = torch.Generator().manual_seed(7)
    for m, n, k, bias_kind, act, alpha, beta in [
        (37, 45, 50, "col", "relu", 2.0, 0.5),
        (64, 100, 300, "row", "none", 1.0, 0.0),
        (14, 32, 7, "none", "relu", -1.0, 1.0),
        (3, 5, 0, "row", "relu", 1.0, 2.0),
    ]:
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        c = view((m, n), c_kind, torch.float32, gen)
        if beta == 0:
            c.fill_(float("nan"))
        bias = torch.randn(m if bias_kind == "row" else n, generator=gen) if bias_kind != "none" else None
        expected = reference.gemm(a, b, c.clone(), alpha=alpha, beta=beta)
        if bias is not None:
            expected = expected + (bias.double()[:, None] if bias_kind == "row" else bias.double())
        if act == "relu":
            expected = expected.clamp_min(0)
        coverage, seen = test_ops.gemm_epilogue(c, a, b, bias, bias_kind, act, alpha, beta, single_thread)
        label = f"{isa} {c_kind} {m}x{n}x{k} {bias_kind} {act}"
        assert rel_err(c, expected) < 1e-5, label
        # the callback saw every element exactly once, after its final value was written
        assert torch.equal(coverage, torch.ones(m, n, dtype=torch.int32)), label
        assert torch.equal(seen, c.contiguous()), label


def test_epilogue_relu_keeps_nan(isa, test_ops):
    a = torch.tensor([[float("nan"), 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
    c = torch.zeros(2, 2)
    test_ops.gemm_epilogue(c, a, b, None, "none", "relu", 1.0, 0.0, False)
    assert c[0].isnan().all() and c[1, 0] == 2.0 and c[1, 1] == 0.0


# ---- autograd, opcheck, compile -------------------------------------------------------------


def test_gradcheck():
    gen = torch.Generator().manual_seed(8)
    a = torch.randn(7, 13, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(13, 5, dtype=torch.float64, generator=gen).t().contiguous().t().requires_grad_(True)
    c = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: ops.gemm(a, b, c, alpha=0.5, beta=-2.0), (a, b, c))
    assert torch.autograd.gradgradcheck(ops.matmul, (a, b))
    with bigmodel.use_isa("generic"):
        assert torch.autograd.gradcheck(ops.matmul, (a, b))


def test_gradients_match_reference():
    a = torch.randn(40, 70, requires_grad=True)
    b = torch.randn(70, 33, requires_grad=True)
    g = torch.randn(40, 33)
    ga, gb = torch.autograd.grad(ops.matmul(a, b), (a, b), g)
    ra, rb = reference.grads(reference.matmul, [a, b], g)
    assert rel_err(ga, ra) < 1e-5 and rel_err(gb, rb) < 1e-5


def test_opcheck():
    a = torch.randn(9, 20, dtype=torch.float64, requires_grad=True)
    b = torch.randn(20, 11, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.bigmodel.gemm.default, (a, b, torch.randn(11, dtype=torch.float64)),
                          {"alpha": 0.5, "beta": 2.0})
    torch.library.opcheck(torch.ops.bigmodel.gemm.default, (b.detach().t(), a.detach().t()))
    torch.library.opcheck(torch.ops.bigmodel.gemm_.default, (torch.randn(9, 11), torch.randn(9, 20),
                                                              torch.randn(20, 11)), {"alpha": 2.0, "beta": 0.5})
    torch.library.opcheck(torch.ops.bigmodel.gemm_batch_reduce.default, (torch.randn(3, 4, 5), torch.randn(3, 5, 6)))
    torch.library.opcheck(torch.ops.bigmodel.gemm_pack.default, (torch.randn(20, 11), "b"))


def test_opcheck_epilogue(test_ops):
    torch.library.opcheck(test_ops.gemm_epilogue.default,
                          (torch.randn(9, 11), torch.randn(9, 20), torch.randn(20, 11), torch.randn(11), "col",
                           "relu", 1.0, 0.0, False))


def test_torch_compile():
    fn = torch.compile(lambda a, b: ops.matmul(a, b).relu(), fullgraph=True, backend="aot_eager")
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    torch.testing.assert_close(fn(a, b), (a @ b).relu(), rtol=1e-5, atol=1e-5)


# ---- bad input --------------------------------------------------------------------------------


def test_bad_inputs():
    m = torch.randn(3, 4)
    with pytest.raises(ValueError, match="matmul: input must be a 2-D matrix, got a 1-D tensor"):
        ops.matmul(torch.randn(4), m)
    with pytest.raises(ValueError, match=r"gemm: a has shape \[3, 4\] and b has shape \[5, 2\]; b.size\(0\) must equal a.size\(1\)"):
        ops.gemm(m, torch.randn(5, 2))
    with pytest.raises(TypeError, match="gemm: a must be float32 or float64 on CPU, got Int"):
        ops.gemm(m.int(), torch.randn(4, 2))
    with pytest.raises(TypeError, match="gemm: b has dtype Double but a has dtype Float"):
        ops.gemm(m, torch.randn(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"gemm: c of shape \[2, 2\] cannot be broadcast to the result's shape \[3, 2\]"):
        ops.gemm(m, torch.randn(4, 2), torch.randn(2, 2), beta=1.0)
    with pytest.raises(TypeError, match="gemm: c has dtype Double but a and b have dtype Float"):
        ops.gemm(m, torch.randn(4, 2), torch.randn(3, 2, dtype=torch.float64), beta=1.0)
    with pytest.raises(ValueError, match="gemm_: c must not share memory with a or b"):
        big = torch.randn(4, 4)
        torch.ops.bigmodel.gemm_(big, big, torch.randn(4, 4))
    with pytest.raises(ValueError, match="gemm_: c has overlapping elements"):
        torch.ops.bigmodel.gemm_(torch.randn(1, 4).expand(3, 4), m, torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"gemm_: c has shape \[3, 3\] but a @ b has shape \[3, 4\]"):
        torch.ops.bigmodel.gemm_(torch.randn(3, 3), m, torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"gemm_batch_reduce: a has shape \[2, 3, 4\] and b has shape \[3, 4, 5\]"):
        ops.gemm_batch_reduce(torch.randn(2, 3, 4), torch.randn(3, 4, 5))
    with pytest.raises(ValueError, match="gemm_batch_reduce: a must be 3-D"):
        ops.gemm_batch_reduce(m, torch.randn(1, 4, 5))


# ---- benchmark plumbing -------------------------------------------------------------------------


def test_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    from bigmodel.bench import peak

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(peak, "MEASURE_SECONDS", 0.05)
    first = peak.fp32_peak(1)
    assert first["machine"] > 0 and first["machine_isa"] == bigmodel.available_isas()[0]
    cached = (tmp_path / "bigmodel" / "peak.json").read_text()
    assert f"|{first['machine_isa']}|1 threads" in cached

    def must_not_measure(*args, **kwargs):
        raise AssertionError("the cached peak should have been used")

    monkeypatch.setattr(bigmodel._C, "fma_peak_gflops", must_not_measure)
    assert peak.fp32_peak(1)["machine"] == first["machine"]
    with pytest.raises(AssertionError, match="cached peak"):
        peak.fp32_peak(1, refresh=True)


def test_bench_gemm_command(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from bigmodel.bench import peak
    from bigmodel_cli.app import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(peak, "MEASURE_SECONDS", 0.05)
    result = CliRunner().invoke(app, ["bench", "gemm", "--shape", "33,17,65", "--warmup", "0", "--repeats", "2",
                                      "--json", "-"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (case,) = data["results"]
    assert case["status"] == "ok" and case["params"]["M"] == 33 and case["work"]["GFLOP"] > 0
    assert data["meta"]["peak_gflops"]["machine"] > 0


def test_regression_matmul_errors_name_matmul_arguments():
    # Found by tests/gemm/test_properties_gemm.py: matmul's bad dtypes and shape mismatches were reported
    # by the underlying gemm op as "gemm: a ... b ...", naming arguments matmul does not have.
    with pytest.raises(ValueError, match=r"matmul: input has shape \[2, 3\] and other has shape \[4, 2\]"):
        ops.matmul(torch.zeros(2, 3), torch.zeros(4, 2))
    with pytest.raises(TypeError, match="matmul: other must be float32 or float64, got torch.int64"):
        ops.matmul(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="matmul: other has dtype torch.float64 but input has dtype torch.float32"):
        ops.matmul(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.float64))
