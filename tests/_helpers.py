"""Shared bits of the tests: tiny training configurations, subprocess environments, stable seeds."""

from __future__ import annotations

import os
from pathlib import Path

import torch

import bigmodel
from bigmodel.engine import resolve

REPO_ROOT = Path(bigmodel.__file__).resolve().parent.parent  # where bigmodel and bigmodel_cli are importable
CHECKOUT = Path(__file__).resolve().parent.parent  # the source tree (kernels/, tests/cuda/), even when bigmodel is installed
TINY = {
    "cnn": {"channels": "4,8", "hidden": 16, "dropout": 0.2},
    "mlp": {"hidden": "32", "dropout": 0.2},
    "lstm": {"hidden": 16},
    "transformer": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32},
    "transformer-lm": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32},
}


def tiny_config(tmp_path: Path, model: str = "cnn", **kw):
    values = {"model": model, "model_options": dict(TINY[model]), "limit": 256, "epochs": 2, "batch_size": 32,
              "out": str(tmp_path / "runs")}
    values.update(kw)
    return resolve(values)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env.update(extra)
    return env


def model_state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


def write_text_corpus(path: Path, n: int = 3000) -> Path:
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    path.write_text(" ".join(words[(i * 7 + i // 3) % len(words)] for i in range(n // 4)) + "\n")
    return path


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (the built-in hash() of a str is not)."""
    import zlib

    return zlib.crc32(repr(parts).encode()) & 0xFFFF


def build_cuda_emulation(tmp_path_factory, family: str, threads: bool = False):
    """Compile tests/cuda/<family>_emulation.cu (the family's CUDA kernels' __host__ __device__
    code, run on the CPU) with nvcc into a shared library and load it; skip without nvcc.
    threads: the file runs whole kernels through tests/cuda/thread_emulation.h (one std::thread per
    CUDA thread), so it is compiled as host C++ (-x c++) with that header standing in for CUDA's."""
    import ctypes
    import shutil
    import subprocess

    import pytest

    nvcc = next((os.path.join(c, "bin", "nvcc") for c in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"))
                 if c and os.path.isfile(os.path.join(c, "bin", "nvcc"))), None)
    nvcc = nvcc or shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if os.path.isfile("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA kernels' host emulation needs it to compile")
    root = str(CHECKOUT)
    out = tmp_path_factory.mktemp(f"{family}_emulation") / f"lib{family}_emulation.so"
    lang = ["-x", "c++", "-Xcompiler", "-mf16c", "-Xcompiler", "-pthread"] if threads else ["-arch=sm_80"]
    cmd = [nvcc, *lang, "-std=c++20", "-O1", "-shared", "-Xcompiler", "-fPIC",
           "-I", os.path.join(root, "kernels", "include"), "-I", os.path.join(root, "kernels"),
           os.path.join(root, "tests", "cuda", f"{family}_emulation.cu"), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"nvcc failed:\n{res.stdout}\n{res.stderr}"
    return ctypes.CDLL(str(out))
