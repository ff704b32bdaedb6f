"""`bigmodel bench conv`: conv2d against torch.nn.functional.conv2d, with % of the measured fp32 peak."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..app_common import import_bigmodel, parse_dtype, parse_shape, set_threads
from . import common as C
from .common import bench, config, pct_of, peak_line


def conv(
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="Input N,C,H,W (repeatable), with the options "
                                              "below. Default: the [conv] cases of benchmarks/suite.toml."),
    out_channels: Optional[int] = typer.Option(None, "--out-channels", "-o", min=1,
                                               help="Output channels, with --shape (default: C)."),
    kernel_size: int = typer.Option(3, "--kernel-size", "-k", min=1, help="Kernel size, with --shape."),
    stride: int = typer.Option(1, "--stride", "-s", min=1, help="Stride, with --shape."),
    padding: Optional[int] = typer.Option(None, "--padding", "-p", min=0,
                                          help="Padding, with --shape (default: kernel_size // 2)."),
    groups: int = typer.Option(1, "--groups", "-g", min=1, help="Groups, with --shape (C for depthwise)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="nchw, channels_last or both (default: the suite's)."),
    pass_: Optional[str] = typer.Option(None, "--pass", help="fwd, fwd+bwd (input, weight and bias gradients) or both (default: the suite's)."),
    dtype: str = C.DTYPE, device: str = C.DEVICE, threads: Optional[int] = C.THREADS, warmup: Optional[int] = C.WARMUP,
    repeats: Optional[int] = C.REPEATS, max_seconds: Optional[float] = C.MAX_SECONDS, as_json: bool = C.JSON_FLAG,
    json_file=C.JSON_FILE, markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """conv2d against torch.nn.functional.conv2d: time, GFLOP/s and % of the measured fp32 peak."""
    import_bigmodel()
    import torch

    from bigmodel.bench import conv as Cv

    layouts, passes = C.choice("--layout", layout, Cv.LAYOUTS), C.choice("--pass", pass_, Cv.PASSES)
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    fam = C.suite_family("conv")
    configs = None
    if shape:
        configs = []
        for s in shape:
            dims = parse_shape(s, 4, "--shape")
            configs.append(config(Cv.ConvConfig, "--shape", shape=dims, out_channels=out_channels or dims[1],
                                   kernel=kernel_size, stride=stride,
                                   padding=kernel_size // 2 if padding is None else padding, groups=groups))
    notes = ["fwd+bwd: a forward and the input, weight and bias gradients (3x the forward's flops)"]
    peak = None
    if device == "cpu":
        peak, line = peak_line(torch.get_num_threads())
        notes.append(line)
    cases = fam.make(configs=configs, layouts=layouts, passes=passes, dtype=dt, device=device)
    bench("conv", cases, C.timing(fam, warmup, repeats, max_seconds), C.Output(as_json, json_file, csv_out,
           markdown_out), {"device": device, "peak_gflops": peak}, "conv2d: bigmodel vs torch.nn.functional.conv2d",
           ["GFLOP"], [("% of peak", pct_of(peak, "ours")), ("torch % of peak", pct_of(peak, "torch"))], notes)
