"""Datasets by name, all held in memory:

    embedded         5,000 real MNIST digits shipped in a PyPI package (the default; no network)
    mnist            full MNIST from the four IDX files in --data-dir (`bigmodel data download mnist`)
    text:FILE        character-level language modelling on a UTF-8 text file
    csv:FILE         text classification from a CSV with `text` and `label` columns
"""

from __future__ import annotations

import os

from ..errors import DataError
from .base import DataBundle, DataSpec, TensorSplit, limit_split, stratified_split
from .embedded import load_embedded
from .idx import read_idx, write_idx
from .mnist import MNIST_FILES, default_cache_dir, download_mnist, load_mnist
from .text import load_char_lm, load_csv_classify

DATASETS = ("embedded", "mnist", "text:FILE", "csv:FILE")


def load_data(
    name: str = "embedded",
    data_dir: str | os.PathLike | None = None,
    seq_len: int | None = None,
    vocab: list[str] | None = None,
    classes: list[str] | None = None,
) -> DataBundle:
    """Load a dataset by name (see the module docstring). `vocab` and `classes` come from a
    checkpoint when evaluating or fine-tuning, so ids mean what they meant in training."""
    if name == "embedded":
        return load_embedded()
    if name == "mnist":
        return load_mnist(data_dir)
    kind, sep, path = name.partition(":")
    if sep and kind == "text":
        if not path:
            raise DataError("--data text:FILE needs a file name after 'text:'")
        return load_char_lm(path, seq_len, vocab)
    if sep and kind == "csv":
        if not path:
            raise DataError("--data csv:FILE needs a file name after 'csv:'")
        return load_csv_classify(path, seq_len, vocab, classes)
    raise DataError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")


__all__ = [
    "DATASETS", "DataBundle", "DataSpec", "MNIST_FILES", "TensorSplit", "default_cache_dir", "download_mnist",
    "limit_split", "load_char_lm", "load_csv_classify", "load_data", "load_embedded", "load_mnist", "read_idx",
    "stratified_split", "write_idx",
]
