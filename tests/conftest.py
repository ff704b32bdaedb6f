"""Shared fixtures. Tests import the *installed* bigmodel (run pytest from the checkout root; the
rootdir conftest is this file, so the source tree's bigmodel/ is not put on sys.path)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

import bigmodel

ISAS = bigmodel.available_isas()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test once per ISA path this CPU supports (avx512, avx2, generic)."""
    with bigmodel.use_isa(request.param):
        yield request.param


@pytest.fixture(scope="session")
def test_ops():
    """The test-only ops of csrc/test_ops (torch.ops.bigmodel_test.*), which bigmodel._C does not
    ship: compiled on first use into build/test_ops (later runs reuse it) and bound to the
    installed bigmodel._C's GEMM engine. Skips where no C++ compiler or ninja is found."""
    from torch.utils import cpp_extension

    if shutil.which(os.environ.get("CXX", "c++")) is None or not cpp_extension.is_ninja_available():
        pytest.skip("building the test-only ops needs a C++ compiler and ninja")
    build_dir = os.path.join(ROOT, "build", "test_ops")
    os.makedirs(build_dir, exist_ok=True)
    ext = cpp_extension.load(
        name="bigmodel_test_ops",
        sources=[os.path.join(ROOT, "csrc", "test_ops", "gemm_epilogue.cpp")],
        extra_include_paths=[os.path.join(ROOT, "csrc"), os.path.join(ROOT, "kernels", "include")],
        extra_cflags=["-std=c++20", "-O1", "-g0"],
        build_directory=build_dir,
    )
    ext.init(bigmodel._C.gemm_engine)

    @torch.library.register_fake("bigmodel_test::gemm_epilogue")
    def _gemm_epilogue_fake(c, a, b, bias, bias_kind, activation, alpha, beta, single_thread):
        return c.new_empty(c.shape, dtype=torch.int32), c.new_empty(c.shape)

    return torch.ops.bigmodel_test


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        # the marker itself, not item.keywords, which also holds folder names
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def pytest_report_header(config):
    info = bigmodel.build_info()
    return (f"bigmodel {bigmodel.__version__} from {os.path.dirname(bigmodel.__file__)}; "
            f"ISA paths here: {', '.join(ISAS)}; CUDA compiled: {info['cuda_compiled']}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
