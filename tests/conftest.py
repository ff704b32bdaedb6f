"""Shared fixtures. Tests import the *installed* bigmodel (run pytest from the checkout root; the
rootdir conftest is this file, so the source tree's bigmodel/ is not put on sys.path)."""

from __future__ import annotations

import os

import pytest
import torch

import bigmodel

ISAS = bigmodel.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test once per ISA path this CPU supports (avx512, avx2, generic)."""
    with bigmodel.use_isa(request.param):
        yield request.param


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
