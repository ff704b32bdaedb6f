"""ISA selection, build information and the import-time checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import bigmodel


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    # The child imports the same bigmodel as this process (installed, or an in-place build).
    pkg_root = os.path.dirname(os.path.dirname(bigmodel.__file__))
    path = os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          cwd=os.path.dirname(__file__), timeout=120)


def test_build_info_describes_the_build():
    info = bigmodel.build_info()
    assert info["version"] == bigmodel.__version__
    assert info["torch_built_against"].split("+")[0] == torch.__version__.split("+")[0]
    assert "generic" in info["isa_compiled"] and "generic" in info["isa_supported"]
    assert info["isa_active"] == bigmodel.active_isa() in info["isa_supported"]
    assert info["isa_best"] == info["isa_supported"][0]
    names = {op["name"]: op["backends"] for op in info["ops"]}
    cpu_only = {op["name"] for op in info["ops"] if op["cpu_only"]}
    for op in ("max_pool2d", "max_pool2d_with_indices", "max_pool2d_backward", "avg_pool2d",
               "avg_pool2d_backward"):
        assert "cpu" in names[op], op
        assert ("cuda" in names[op]) == info["cuda_compiled"], op
    for family_op in ("conv2d", "lstm", "lstm_cell", "scaled_dot_product_attention_forward", "gemm"):
        assert family_op in names, family_op
    # every op runs on the CPU (a kernel, or a composite of ops that have one); with CUDA compiled,
    # every op but the CPU-only ones has a CUDA kernel too
    for name, backends in names.items():
        assert "cpu" in backends or "composite" in backends, name
        if info["cuda_compiled"] and "composite" not in backends and name not in cpu_only:
            assert "cuda" in backends, name
        if name in cpu_only:
            assert backends == ["cpu"], name
    assert names["scaled_dot_product_attention"] == ["composite"]
    assert cpu_only == {"gemm", "gemm_", "gemm_batch_reduce", "gemm_pack", "gemm_prepacked", "attention_dropout_mask"}


def test_test_only_ops_are_not_in_the_library():
    # they live in csrc/test_ops, built by the tests (the test_ops fixture), not into bigmodel._C
    names = {op["name"] for op in bigmodel.build_info()["ops"]}
    assert not {n for n in names if n.startswith("_")}, names
    assert not hasattr(torch.ops.bigmodel, "_gemm_epilogue")
    assert not hasattr(bigmodel, "CPU_ONLY_OPS")


def test_available_isas_are_best_first_and_switchable():
    isas = bigmodel.available_isas()
    order = ["avx512", "avx2", "generic"]
    assert isas == [i for i in order if i in isas]
    before = bigmodel.active_isa()
    for isa in isas:
        with bigmodel.use_isa(isa):
            assert bigmodel.active_isa() == isa
    assert bigmodel.active_isa() == before


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown ISA path 'sse9'; expected one of avx512, avx2, generic"):
        bigmodel.set_isa("sse9")


def test_env_var_forces_a_path():
    for isa in bigmodel.available_isas():
        r = _run_python("import bigmodel; print(bigmodel.active_isa())", BIGMODEL_ISA=isa.upper())
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == isa


def test_bad_env_var_fails_at_import_with_a_clear_message():
    r = _run_python("import bigmodel", BIGMODEL_ISA="neon")
    assert r.returncode != 0
    assert "BIGMODEL_ISA: unknown ISA path 'neon'" in r.stderr


@pytest.mark.skipif("avx512" in bigmodel.available_isas(), reason="this CPU runs AVX-512")
def test_env_var_asking_for_missing_avx512_is_an_error():
    r = _run_python("import bigmodel", BIGMODEL_ISA="avx512")
    assert r.returncode != 0 and "cannot run the avx512 path" in r.stderr


def test_isa_paths_agree_bit_for_bit_on_max_pool():
    # Max pooling only selects values, so every path must return identical bits.
    x = torch.randn(3, 19, 31, 45)
    outs = []
    for isa in bigmodel.available_isas():
        with bigmodel.use_isa(isa):
            outs.append(bigmodel.ops.max_pool2d(x, 3, 2, 1, return_indices=True))
    for y, i in outs[1:]:
        assert torch.equal(y, outs[0][0]) and torch.equal(i, outs[0][1])


def test_thread_count_does_not_change_results():
    x = torch.randn(4, 33, 40, 40).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    results = []
    old = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            y = bigmodel.ops.avg_pool2d(x, 3, 2, 1)
            (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
            results.append((y, g))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
