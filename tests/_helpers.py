"""Shared bits of the tests: tiny training configurations, subprocess environments, stable seeds."""

from __future__ import annotations

import os
from pathlib import Path

import torch

import bigmodel
from bigmodel.engine import resolve

REPO_ROOT = Path(bigmodel.__file__).resolve().parent.parent  # where bigmodel and bigmodel_cli are importable
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
