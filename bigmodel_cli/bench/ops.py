"""`bigmodel bench pool | conv | lstm`: one op family against torch, at the shapes of
benchmarks/suite.toml unless --shape says otherwise."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..app_common import console, import_bigmodel, parse_dtype, parse_shape, set_threads
from . import common as C
from .tables import results_table


def _config(cls, option: str, **values):
    """A family config from command-line values: its own checks, reported against `option`."""
    from bigmodel.errors import ConfigError

    try:
        return cls(**values)
    except ConfigError as exc:
        field = str(exc).split(":", 1)[0]
        hints = {"groups": "--groups", "kernel": "--kernel-size", "padding": "--padding", "stride": "--stride",
                 "out_channels": "--out-channels"}
        raise typer.BadParameter(str(exc), param_hint=hints.get(field, option))


def _bench(family: str, cases, t, out: C.Output, meta: dict, title: str, units, extra=(), notes=()):
    results = C.run(cases, t, out.as_json)
    meta = {"suite": family, **t, "command": f"bigmodel bench {family}", "units": list(units), **meta}

    def render(env):
        console.print(results_table(results, title, units, extra))
        for line in notes:
            console.print(f"[dim]{line}[/]")
    C.emit(results, out, meta, render)


def pool(
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="Input N,C,H,W (repeatable). Default: the "
                                              "[pool] cases of benchmarks/suite.toml."),
    kernel_size: int = typer.Option(2, "--kernel-size", "-k", min=1, help="Kernel size, with --shape."),
    stride: Optional[int] = typer.Option(None, "--stride", "-s", min=1, help="Stride, with --shape (default: kernel)."),
    padding: int = typer.Option(0, "--padding", "-p", min=0, help="Padding, with --shape."),
    op: Optional[str] = typer.Option(None, "--op", help="max, avg or both (default: the suite's)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="nchw, channels_last or both (default: the suite's)."),
    pass_: Optional[str] = typer.Option(None, "--pass", help="fwd, fwd+bwd or both (default: the suite's)."),
    dtype: str = C.DTYPE, device: str = C.DEVICE, threads: Optional[int] = C.THREADS,
    warmup: Optional[int] = C.WARMUP, repeats: Optional[int] = C.REPEATS,
    max_seconds: Optional[float] = C.MAX_SECONDS,
    as_json: bool = C.JSON_FLAG, json_file=C.JSON_FILE,
    markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """Max and average pooling against torch.nn.functional, forward and forward+backward."""
    import_bigmodel()
    from bigmodel.bench import pool as P

    ops, layouts = C.choice("--op", op, P.OPS), C.choice("--layout", layout, P.LAYOUTS)
    passes = C.choice("--pass", pass_, P.PASSES)
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    fam = C.suite_family("pool")
    configs = [_config(P.PoolConfig, "--shape", shape=parse_shape(s, 4, "--shape"), kernel=kernel_size,
                       stride=stride or kernel_size, padding=padding) for s in shape] if shape else None
    cases = fam.make(configs=configs, ops=ops, layouts=layouts, passes=passes, dtype=dt, device=device)
    _bench("pool", cases, C.timing(fam, warmup, repeats, max_seconds), C.Output(as_json, json_file, csv_out,
           markdown_out), {"device": device}, "pooling: bigmodel vs torch.nn.functional", ["GB"])


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
    dtype: str = C.DTYPE, device: str = C.DEVICE, threads: Optional[int] = C.THREADS,
    warmup: Optional[int] = C.WARMUP, repeats: Optional[int] = C.REPEATS,
    max_seconds: Optional[float] = C.MAX_SECONDS,
    as_json: bool = C.JSON_FLAG, json_file=C.JSON_FILE,
    markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
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
            configs.append(_config(Cv.ConvConfig, "--shape", shape=dims, out_channels=out_channels or dims[1],
                                   kernel=kernel_size, stride=stride,
                                   padding=kernel_size // 2 if padding is None else padding, groups=groups))
    notes = ["fwd+bwd: a forward and the input, weight and bias gradients (3x the forward's flops)"]
    peak = None
    if device == "cpu":
        peak, line = _peak(torch.get_num_threads())
        notes.append(line)
    cases = fam.make(configs=configs, layouts=layouts, passes=passes, dtype=dt, device=device)
    _bench("conv", cases, C.timing(fam, warmup, repeats, max_seconds), C.Output(as_json, json_file, csv_out,
           markdown_out), {"device": device, "peak_gflops": peak}, "conv2d: bigmodel vs torch.nn.functional.conv2d",
           ["GFLOP"], [("% of peak", pct_of(peak, "ours")), ("torch % of peak", pct_of(peak, "torch"))], notes)


def _peak(threads: int, refresh: bool = False):
    """The machine's measured fp32 peak (bigmodel.bench.peak, cached) and a line that says so."""
    from bigmodel.bench.peak import fp32_peak

    info = fp32_peak(threads, refresh=refresh)
    return info["machine"], (f"fp32 peak {info['machine']:.0f} GFLOP/s ({info['machine_isa']}, {info['threads']} "
                             f"threads): our FMA-throughput loop, per-thread CPU time, cached in {info['cache']}")


def pct_of(peak, which: str):
    def cell(r):
        v = r.throughput("GFLOP", which)
        return "-" if v is None or not peak else f"{100 * v / peak:.0f}%"
    return cell


def lstm(
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="B,T,I,H: batch, steps, input and hidden size "
                                              "(repeatable). Default: the [lstm] cases of benchmarks/suite.toml."),
    pass_: Optional[str] = typer.Option(None, "--pass", help="inference, fwd+bwd or both (default: the suite's)."),
    baseline: str = typer.Option("both", "--baseline", help="lstm (torch.nn.LSTM), cell-loop (a Python loop over "
                                 "torch.nn.LSTMCell) or both."),
    dtype: str = C.DTYPE, device: str = C.DEVICE, threads: Optional[int] = C.THREADS,
    warmup: Optional[int] = C.WARMUP, repeats: Optional[int] = C.REPEATS,
    max_seconds: Optional[float] = C.MAX_SECONDS,
    as_json: bool = C.JSON_FLAG, json_file=C.JSON_FILE,
    markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """LSTM layer (bigmodel.nn.LSTM) against torch.nn.LSTM and a loop over torch.nn.LSTMCell."""
    import_bigmodel()
    from bigmodel.bench import lstm as L

    passes, baselines = C.choice("--pass", pass_, L.PASSES), C.choice("--baseline", baseline, L.BASELINES)
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    fam = C.suite_family("lstm")
    configs = [_config(L.LstmConfig, "--shape", **dict(zip(("batch", "steps", "input_size", "hidden_size"),
                                                            parse_shape(s, 4, "--shape")))) for s in shape] if shape else None
    cases = fam.make(configs=configs, passes=passes, baselines=baselines, dtype=dt, device=device)
    _bench("lstm", cases, C.timing(fam, warmup, repeats, max_seconds), C.Output(as_json, json_file, csv_out,
           markdown_out), {"device": device},
           "LSTM: bigmodel.nn.LSTM vs torch (torch column: the baseline named in the case)", ["GFLOP"])
