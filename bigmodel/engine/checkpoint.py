"""Checkpoints: one torch.save'd dict, written atomically, read back with weights_only=True.

Contents: format/version tags; the training config (which holds the model's name and
hyper-parameters); what the data needs to be rebuilt (spec, classes, vocabulary); model weights;
optimizer and scheduler state; every RNG state (Python, NumPy, torch CPU and CUDA); epoch, step and
position inside the epoch; the metrics so far and the best validation figure.
"""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import write_with
from ..errors import CheckpointError

FORMAT = "bigmodel-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "train_config", "data", "model_state", "epoch", "step")


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write `state` (tagged with format and version) to path."""
    state = {"format": FORMAT, "version": VERSION, **state}
    write_with(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; CheckpointError names the file and says what is wrong."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: folder holds no best.pt or last.pt checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty, not a checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if zipfile.is_zipfile(path) or "central directory" in msg or "unexpected EOF" in msg or isinstance(exc, EOFError):
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({msg})") from None
        raise CheckpointError(f"{path}: not a bigmodel checkpoint (torch.load could not read it: {msg})") from None
    except Exception as exc:  # noqa: BLE001 - pickle errors from arbitrary foreign files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a bigmodel checkpoint ({type(exc).__name__}: {msg})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        what = "a dict without bigmodel's format tag (a plain state_dict?)" if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a bigmodel checkpoint (found {what})")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {state.get('version')!r} is not supported "
                              f"(this bigmodel reads version {VERSION})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}")
    state["path"] = str(path)
    return state


def resolve_resume_path(resume: str, out: str | os.PathLike) -> Path:
    """'latest' -> the most recently written OUT/*/last.pt; a folder -> its last.pt; else the path."""
    if resume == "latest":
        candidates = sorted(Path(out).glob("*/last.pt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise CheckpointError(f"--resume latest: no run with a last.pt under {out}/")
        return candidates[-1]
    p = Path(resume)
    if p.is_dir():
        if not (p / "last.pt").is_file():
            raise CheckpointError(f"{p}: folder holds no last.pt to resume from")
        return p / "last.pt"
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    return p
