"""Datasets: the embedded MNIST subset, our IDX reader, full-MNIST loading and download (against a
local HTTP server on 127.0.0.1 only), text and CSV data, and the errors for bad files."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from bigmodel.data import (DataSpec, download_mnist, load_char_lm, load_csv_classify, load_data, load_embedded,
                           load_mnist, read_idx, write_idx)
from bigmodel.data import mnist as mnist_mod
from bigmodel.errors import DataError, DownloadError


def _rejects(load, path: Path, content: bytes | str, message: str) -> None:
    """`load(path)` of a file holding `content` raises a DataError that matches `message` and names the file."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as exc:
        load(path)
    assert str(path) in str(exc.value)


# ---------------------------------------------------------------------------------------------
# embedded default
def test_embedded_is_real_mnist_with_a_stratified_split():
    b = load_embedded()
    assert b.spec == DataSpec("image", "classify", (1, 28, 28), 10)
    train, val = b.split("train"), b.split("val")
    assert (len(train), len(val)) == (4000, 1000)
    assert torch.bincount(val.targets, minlength=10).tolist() == [100] * 10
    assert torch.bincount(train.targets, minlength=10).tolist() == [400] * 10
    x, y = train[torch.arange(8)]
    assert x.dtype == torch.float32 and x.shape == (8, 1, 28, 28) and y.dtype == torch.int64
    raw = train.inputs.float() / 255
    assert 0.10 < raw.mean() < 0.16  # MNIST's mean intensity is about 0.13
    # the split is fixed (independent of any training seed)
    assert torch.equal(load_embedded().split("val").targets, val.targets)
    with pytest.raises(DataError, match="has no 'test' split"):
        b.split("test")


def test_embedded_file_errors(tmp_path, monkeypatch):
    from bigmodel.data.embedded import read_digits_csv

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        read_digits_csv(empty)
    bad = tmp_path / "short.csv"
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="short.csv: expected 785 comma-separated values"):
        read_digits_csv(bad)
    monkeypatch.setenv("BIGMODEL_EMBEDDED_MNIST", str(tmp_path / "missing.csv.gz"))
    with pytest.raises(DataError, match="missing.csv.gz: embedded MNIST file not found"):
        load_embedded()


# ---------------------------------------------------------------------------------------------
# IDX format
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 5, 7)) * 50).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, arr)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_idx_header_is_big_endian_with_magic(tmp_path):
    write_idx(tmp_path / "l.idx", np.arange(300, dtype=np.int32).reshape(3, 100))
    raw = (tmp_path / "l.idx").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 2]) and raw[4:12] == (3).to_bytes(4, "big") + (100).to_bytes(4, "big")
    assert raw[12:16] == (0).to_bytes(4, "big") and raw[16:20] == (1).to_bytes(4, "big")


@pytest.mark.parametrize("content,message", [
    (b"", "file is empty"),
    (b"\x00\x00", "too short for an IDX header"),
    (b"PK\x03\x04" + b"\x00" * 20, "not an IDX file \\(magic number 0x504B0304"),
    (b"\x00\x00\x07\x01" + b"\x00" * 8, "not an IDX file"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "IDX data truncated: header says 5 uint8 = 5 bytes, file has 3"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02abc", "has trailing bytes"),
])
def test_idx_rejects_bad_files(tmp_path, content, message):
    _rejects(read_idx, tmp_path / "bad-idx", content, message)


def test_idx_corrupt_gzip_and_missing(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01z")[:-6])
    with pytest.raises(DataError, match="x.gz: corrupt or truncated gzip"):
        read_idx(p)
    with pytest.raises(DataError, match="nope: file not found"):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------
# full MNIST from IDX files (small fake files the test writes)
def _write_mnist(folder: Path, n_train=48, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8))


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_idx(tmp_path, gz):
    _write_mnist(tmp_path, gz=gz)
    b = load_data("mnist", tmp_path)
    assert b.spec.input_shape == (1, 28, 28)
    assert len(b.split("train")) + len(b.split("val")) == 48 and len(b.split("test")) == 20
    assert torch.equal(b.split("test").targets, torch.arange(20) % 10)


def test_load_mnist_errors(tmp_path):
    with pytest.raises(DataError, match="MNIST folder not found.*bigmodel data download mnist"):
        load_mnist(tmp_path / "nothing")
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte \\(or t10k-labels-idx1-ubyte.gz\\) not found"):
        load_mnist(tmp_path)
    # labels where images should be: wrong magic number
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(20, np.uint8))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: magic number 0x00000801, expected 0x00000803"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((20, 14, 14), np.uint8))
    with pytest.raises(DataError, match="items have shape \\(14, 14\\), expected \\(28, 28\\)"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((19, 28, 28), np.uint8))
    with pytest.raises(DataError, match="has 19 images but .* has 20 labels"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------------------------------------
# download, against a server on 127.0.0.1 that this test starts
@contextlib.contextmanager
def _serve(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(folder), **k)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _fake_mirror(folder: Path, monkeypatch) -> None:
    """Four small .gz IDX files and our checksum table pointed at them."""
    _write_mnist(folder)
    files = tuple(mnist_mod.MnistFile(f.name, hashlib.sha256((folder / f"{f.name}.gz").read_bytes()).hexdigest(),
                                      (folder / f"{f.name}.gz").stat().st_size) for f in mnist_mod.MNIST_FILES)
    monkeypatch.setattr(mnist_mod, "MNIST_FILES", files)


def test_download_from_local_server(tmp_path, monkeypatch):
    mirror_dir, dest = tmp_path / "mirror", tmp_path / "cache"
    mirror_dir.mkdir()
    _fake_mirror(mirror_dir, monkeypatch)
    seen = []
    with _serve(mirror_dir) as url:
        out = download_mnist(dest, [url], progress=lambda name, done, total: seen.append((name, done, total)))
    assert out == dest
    for f in mnist_mod.MNIST_FILES:
        assert (dest / f"{f.name}.gz").read_bytes() == (mirror_dir / f"{f.name}.gz").read_bytes()
        assert (f"{f.name}.gz", f.size, f.size) in seen  # progress reached 100% for every file
    assert not list(dest.glob(".*tmp"))  # no temporary files left
    assert len(load_mnist(dest).split("test")) == 20
    # a second call finds verified files and fetches nothing (the server is gone now)
    download_mnist(dest, ["http://127.0.0.1:9/"])


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    mirror_dir, dest = tmp_path / "mirror", tmp_path / "cache"
    mirror_dir.mkdir()
    _write_mnist(mirror_dir)  # real MNIST checksums: these fake files cannot match
    with _serve(mirror_dir) as url:
        with pytest.raises(DownloadError, match="SHA-256 mismatch") as exc:
            download_mnist(dest, [url])
    assert "train-images-idx3-ubyte.gz" in str(exc.value)
    assert list(dest.iterdir()) == []


def test_download_missing_file_on_mirror(tmp_path, monkeypatch):
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    _fake_mirror(mirror_dir, monkeypatch)
    (mirror_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with _serve(mirror_dir) as url:
        with pytest.raises(DownloadError, match="t10k-labels-idx1-ubyte.gz: HTTP 404"):
            download_mnist(tmp_path / "cache", [url])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_offline_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(DownloadError, match="could not download train-images-idx3-ubyte.gz from any mirror") as exc:
        download_mnist(tmp_path / "cache", [url], timeout=5)
    assert "Are you offline?" in str(exc.value) and url in str(exc.value)


def test_download_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bigmodel_cli.app import app

    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    _fake_mirror(mirror_dir, monkeypatch)
    runner = CliRunner()
    with _serve(mirror_dir) as url:
        res = runner.invoke(app, ["data", "download", "mnist", "--dir", str(tmp_path / "c"), "--mirror", url])
    assert res.exit_code == 0, res.output
    assert "SHA-256 verified" in res.stdout
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(f"{f.name}.gz" for f in mnist_mod.MNIST_FILES)
    res = runner.invoke(app, ["data", "download", "mnist", "--dir", str(tmp_path / "d"),
                              "--mirror", f"http://127.0.0.1:{_closed_port()}/", "--timeout", "5"])
    assert res.exit_code == 1 and "Are you offline?" in res.stderr
    res = runner.invoke(app, ["data", "download", "cifar"])
    assert res.exit_code == 2 and "unknown dataset 'cifar'" in res.stderr


# ---------------------------------------------------------------------------------------------
# text
def test_char_lm_vocab_from_train_split_only(tmp_path):
    p = tmp_path / "corpus.txt"
    text = "abcab" * 60 + "XYZ" * 10  # the tail (validation) holds characters the training part lacks
    p.write_text(text)
    b = load_char_lm(p, seq_len=8)
    assert b.spec.kind == "tokens" and b.spec.task == "lm" and b.spec.input_shape == (8,)
    assert b.vocab == ["<unk>", "a", "b", "c"]
    x, y = b.split("train")[torch.arange(len(b.split("train")))]
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    vx, _ = b.split("val")[torch.arange(len(b.split("val")))]
    assert (vx == 0).any()  # unseen characters map to <unk>
    # a checkpoint's vocabulary wins over the file's
    b2 = load_char_lm(p, seq_len=8, vocab=["<unk>", "c", "b", "a"])
    assert b2.vocab == ["<unk>", "c", "b", "a"] and b2.spec.vocab_size == 4


def test_char_lm_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.txt: file is empty"):
        load_data(f"text:{empty}")
    short = tmp_path / "short.txt"
    short.write_text("hello")
    with pytest.raises(DataError, match="short.txt: 5 characters is too short"):
        load_data(f"text:{short}", seq_len=16)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(DataError, match="bin.txt: looks like a binary file"):
        load_data(f"text:{binary}")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1") * 100)
    with pytest.raises(DataError, match="latin.txt: not valid UTF-8"):
        load_data(f"text:{latin}")
    with pytest.raises(DataError, match="missing.txt: file not found"):
        load_data(f"text:{tmp_path / 'missing.txt'}")
    with pytest.raises(DataError, match="needs a file name"):
        load_data("text:")
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_data("imagenet")


def _write_csv(path: Path, n=60):
    rows = ["text,label"]
    for i in range(n):
        label = ["pos", "neg", "meh"][i % 3]
        word = {"pos": "great lovely", "neg": "awful bad", "meh": "fine okay"}[label]
        rows.append(f'"item {i} was {word}, {"really " * (i % 4)}",{label}')
    path.write_text("\n".join(rows) + "\n")


def test_csv_classification(tmp_path):
    p = tmp_path / "reviews.csv"
    _write_csv(p)
    b = load_data(f"csv:{p}")
    assert b.classes == ["meh", "neg", "pos"]
    assert b.vocab[:2] == ["<pad>", "<unk>"] and "great" in b.vocab
    assert b.spec.kind == "tokens" and b.spec.task == "classify" and b.spec.pad_index == 0
    assert len(b.split("train")) == 54 and len(b.split("val")) == 6  # 10% of each class
    x, _ = b.split("train")[torch.arange(54)]
    assert (x[:, -1] != 0).all()  # left-padded: the last position is a real token
    # vocabulary comes from the training split only
    train_words = set()
    for row in b.split("train").inputs.tolist():
        train_words.update(i for i in row if i > 1)
    assert train_words == set(range(2, len(b.vocab)))


@pytest.mark.parametrize("content,message", [
    ("", "file is empty \\(expected a CSV with a header row: text,label\\)"),
    ("words,category\nhi,a\n", "header row must name a 'text' and a 'label' column"),
    ("text,label\n", "no data rows after the header"),
    ("text,label\nhello,a\nbye\n", "line 3 has 1 fields, the header has 2"),
    ("text,label\nhello,a\nbye,\n", "line 3 has an empty label"),
    ("text,label\nhello,a\nbye,a\n", "need at least 2 distinct labels"),
])
def test_csv_errors(tmp_path, content, message):
    _rejects(load_csv_classify, tmp_path / "data.csv", content, message)
