"""`bigmodel bench pool`: pooling against torch.nn.functional, at the [pool] shapes of benchmarks/suite.toml
unless --shape says otherwise."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..app_common import import_bigmodel, parse_dtype, parse_shape, set_threads
from . import common as C
from .common import bench, config


def pool(
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="Input N,C,H,W (repeatable). Default: the "
                                              "[pool] cases of benchmarks/suite.toml."),
    kernel_size: int = typer.Option(2, "--kernel-size", "-k", min=1, help="Kernel size, with --shape."),
    stride: Optional[int] = typer.Option(None, "--stride", "-s", min=1, help="Stride, with --shape (default: kernel)."),
    padding: int = typer.Option(0, "--padding", "-p", min=0, help="Padding, with --shape."),
    op: Optional[str] = typer.Option(None, "--op", help="max, avg or both (default: the suite's)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="nchw, channels_last or both (default: the suite's)."),
    pass_: Optional[str] = typer.Option(None, "--pass", help="fwd, fwd+bwd or both (default: the suite's)."),
    dtype: str = C.DTYPE, device: str = C.DEVICE, threads: Optional[int] = C.THREADS, warmup: Optional[int] = C.WARMUP,
    repeats: Optional[int] = C.REPEATS, max_seconds: Optional[float] = C.MAX_SECONDS, as_json: bool = C.JSON_FLAG,
    json_file=C.JSON_FILE, markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """Max and average pooling against torch.nn.functional, forward and forward+backward."""
    import_bigmodel()
    from bigmodel.bench import pool as P

    ops, layouts = C.choice("--op", op, P.OPS), C.choice("--layout", layout, P.LAYOUTS)
    passes = C.choice("--pass", pass_, P.PASSES)
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    fam = C.suite_family("pool")
    configs = [config(P.PoolConfig, "--shape", shape=parse_shape(s, 4, "--shape"), kernel=kernel_size,
                       stride=stride or kernel_size, padding=padding) for s in shape] if shape else None
    cases = fam.make(configs=configs, ops=ops, layouts=layouts, passes=passes, dtype=dt, device=device)
    bench("pool", cases, C.timing(fam, warmup, repeats, max_seconds), C.Output(as_json, json_file, csv_out,
           markdown_out), {"device": device}, "pooling: bigmodel vs torch.nn.functional", ["GB"])
