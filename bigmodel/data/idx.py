"""The IDX file format (the format MNIST ships in), read and written by our own code.

Layout, all integers big-endian:
    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions, d
    then d uint32 sizes, then the elements in row-major order.
So MNIST's image files start with the magic number 0x00000803 (uint8, 3-D) and its label files
with 0x00000801 (uint8, 1-D). Files may be gzip-compressed; we detect that by gzip's own magic
bytes (1f 8b), not by the file name.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

# type code -> numpy big-endian dtype
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_TYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def _read_raw(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array of its type and shape.

    Raises DataError naming the file for a wrong magic number, unknown type, or a size that does
    not match the header (truncated or padded file).
    """
    path = Path(path)
    raw = _read_raw(path)
    if len(raw) == 0:
        raise DataError(f"{path}: file is empty (expected an IDX file)")
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = raw[0:2], raw[2], raw[3]
    magic = int.from_bytes(raw[:4], "big")
    if zero != b"\x00\x00" or code not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file (magic number 0x{magic:08X}; expected 0x00000Tdd with "
                        f"type T in {{08, 09, 0B, 0C, 0D, 0E}} and d >= 1 dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, the header needs {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataError(f"{path}: IDX data {what}: header says {'x'.join(map(str, dims))} {dtype.name} "
                        f"= {expected} bytes, file has {got}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def expect_idx(path: str | os.PathLike, arr: np.ndarray, magic: int, shape_tail: tuple[int, ...] = ()) -> None:
    """Check an array read from `path` came with the expected magic number and trailing shape."""
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    got_magic = (_CODE_OF.get(arr.dtype.str[1:], 0) << 8) | arr.ndim
    if got_magic != magic:
        raise DataError(f"{path}: magic number 0x{got_magic:08X}, expected 0x{magic:08X} "
                        f"({IDX_TYPES[code].name}, {ndim}-D)")
    if shape_tail and tuple(arr.shape[1:]) != shape_tail:
        raise DataError(f"{path}: items have shape {tuple(arr.shape[1:])}, expected {shape_tail}")


def write_idx(path: str | os.PathLike, arr: np.ndarray, compress: bool | None = None) -> None:
    """Write `arr` as an IDX file (gzipped when compress is True, or by default when the name ends
    in .gz). Written atomically."""
    from .._io import write_bytes

    path = Path(path)
    arr = np.asarray(arr)
    key = arr.dtype.str[1:]  # "u1", "f4", ... (the first character is the byte order)
    if key not in _CODE_OF:
        raise ValueError(f"write_idx: dtype {arr.dtype} has no IDX type code")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"write_idx: need 1 to 255 dimensions, got {arr.ndim}")
    code = _CODE_OF[key]
    body = struct.pack(f">BBBB{arr.ndim}I", 0, 0, code, arr.ndim, *arr.shape)
    body += np.ascontiguousarray(arr, dtype=IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.name.endswith(".gz")
    write_bytes(path, gzip.compress(body, mtime=0) if compress else body)
