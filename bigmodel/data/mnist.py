"""Full MNIST (60,000 + 10,000 digits) from the four IDX files, and their download.

`load_mnist(dir)` reads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
and t10k-labels-idx1-ubyte, each with or without .gz, with our IDX reader. `download_mnist(dir)`
fetches the .gz files from a mirror with progress, checks their SHA-256 and writes atomically.
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .._io import atomic_open
from ..errors import DataError, DownloadError
from .base import MNIST_MEAN, MNIST_STD, DataBundle, DataSpec, TensorSplit, stratified_split
from .idx import expect_idx, read_idx


@dataclass(frozen=True)
class MnistFile:
    name: str  # file name without .gz
    sha256: str  # of the .gz file as the mirrors serve it
    size: int  # bytes of the .gz file


# The canonical gzip files, as served by the mirrors below.
MNIST_FILES = (
    MnistFile("train-images-idx3-ubyte", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    MnistFile("train-labels-idx1-ubyte", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    MnistFile("t10k-images-idx3-ubyte", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    MnistFile("t10k-labels-idx1-ubyte", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
)

# Tried in order. Override with --mirror or BIGMODEL_MNIST_MIRROR (comma-separated base URLs).
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
VAL_FRACTION = 1 / 12  # 5,000 of the 60,000 training digits, stratified
SPLIT_SEED = 1234


def default_cache_dir() -> Path:
    """$BIGMODEL_DATA/mnist, else $XDG_CACHE_HOME/bigmodel/mnist, else ~/.cache/bigmodel/mnist."""
    if os.environ.get("BIGMODEL_DATA"):
        return Path(os.environ["BIGMODEL_DATA"]) / "mnist"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bigmodel" / "mnist"


def mirrors_from_env() -> list[str]:
    env = os.environ.get("BIGMODEL_MNIST_MIRROR", "").strip()
    return [m.strip() for m in env.split(",") if m.strip()] or list(DEFAULT_MIRRORS)


def _find(data_dir: Path, name: str) -> Path:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{data_dir}: MNIST file {name} (or {name}.gz) not found; "
                    f"fetch the files with `bigmodel data download mnist --dir {data_dir}`")


def _read_pair(data_dir: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    img_path, lbl_path = _find(data_dir, f"{prefix}-images-idx3-ubyte"), _find(data_dir, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    expect_idx(img_path, images, IMAGES_MAGIC, (28, 28))
    expect_idx(lbl_path, labels, LABELS_MAGIC)
    if images.shape[0] == 0:
        raise DataError(f"{img_path}: holds no images")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_path} has {images.shape[0]} images but {lbl_path} has {labels.shape[0]} labels")
    if labels.max() > 9:
        raise DataError(f"{lbl_path}: label {int(labels.max())} is not a digit 0-9")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype("int64"))


def load_mnist(data_dir: str | os.PathLike | None = None) -> DataBundle:
    """Splits: train (55,000), val (5,000, stratified from the training files), test (10,000)."""
    data_dir = Path(data_dir) if data_dir else default_cache_dir()
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: MNIST folder not found; fetch the files with "
                        f"`bigmodel data download mnist --dir {data_dir}` or pass --data-dir")
    x, y = _read_pair(data_dir, "train")
    xt, yt = _read_pair(data_dir, "t10k")
    keep, held = stratified_split(y, VAL_FRACTION, SPLIT_SEED)
    norm = (MNIST_MEAN, MNIST_STD)
    splits = {
        "train": TensorSplit(x[keep], y[keep], norm),
        "val": TensorSplit(x[held], y[held], norm),
        "test": TensorSplit(xt, yt, norm),
    }
    return DataBundle("mnist", DataSpec("image", "classify", (1, 28, 28), 10), splits,
                      classes=[str(i) for i in range(10)], source=str(data_dir))


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# progress(file_name, bytes_done, bytes_total or None)
Progress = Callable[[str, int, "int | None"], None]


def _fetch(url: str, dest: Path, expected_sha256: str, progress: Progress | None, timeout: float) -> None:
    """Download url to dest atomically, checking SHA-256; raises DownloadError."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_open(dest) as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            if progress:
                progress(dest.name, 0, total)
            while True:
                block = resp.read(1 << 16)
                if not block:
                    break
                out.write(block)
                h.update(block)
                done += len(block)
                if progress:
                    progress(dest.name, done, total)
            if total is not None and done != total:
                raise DownloadError(f"{url}: connection closed after {done} of {total} bytes")
            if h.hexdigest() != expected_sha256:
                raise DownloadError(f"{url}: SHA-256 mismatch (got {h.hexdigest()}, expected {expected_sha256}); "
                                    "the file was not saved")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from None
    except (socket.timeout, TimeoutError):
        raise DownloadError(f"{url}: timed out after {timeout:g} s") from None
    except OSError as exc:
        if isinstance(exc, DownloadError):
            raise
        raise DownloadError(f"{url}: {exc}") from None


def download_mnist(
    data_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    progress: Progress | None = None,
    force: bool = False,
    timeout: float = 30.0,
) -> Path:
    """Fetch the four MNIST .gz files into data_dir (default: the cache folder) and return it.

    Files already present with the right SHA-256 are kept (unless force). Each file is tried on
    every mirror in turn; if all fail, DownloadError says why for each mirror. Nothing partial or
    unverified is ever left under the final name.
    """
    data_dir = Path(data_dir) if data_dir else default_cache_dir()
    mirrors = list(mirrors) if mirrors else mirrors_from_env()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{data_dir}: cannot create the folder ({exc.strerror or exc})") from None
    for f in MNIST_FILES:
        dest = data_dir / f"{f.name}.gz"
        if not force and dest.is_file() and sha256_of(dest) == f.sha256:
            if progress:
                progress(dest.name, f.size, f.size)
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + dest.name
            try:
                _fetch(url, dest, f.sha256, progress, timeout)
                break
            except DownloadError as exc:
                errors.append(str(exc))
        else:
            raise DownloadError(
                f"could not download {dest.name} from any mirror:\n  " + "\n  ".join(errors)
                + "\nAre you offline? Copy the four MNIST files into "
                  f"{data_dir} by hand, or pass another --mirror (or set BIGMODEL_MNIST_MIRROR).")
    return data_dir
