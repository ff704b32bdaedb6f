"""`bigmodel bench ...`: time bigmodel's kernels against PyTorch's, side by side."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .app_common import console, err_console, import_bigmodel, parse_dtype, parse_shape, set_threads, write_atomic

app = typer.Typer(help="Time bigmodel's kernels against PyTorch's in the same process.", no_args_is_help=True)

WARMUP = typer.Option(3, "--warmup", min=0, help="Untimed calls before timing.")
REPEATS = typer.Option(20, "--repeats", min=1, help="Timed calls per side (median and IQR reported).")
THREADS = typer.Option(None, "--threads", min=1, help="Threads for both sides (default: torch's default).")
JSON_OUT = typer.Option(None, "--json", help="Also write the results as JSON to this file ('-' for stdout).")
MARKDOWN_OUT = typer.Option(None, "--markdown", help="Also write the results as a Markdown table to this file.")
CSV_OUT = typer.Option(None, "--csv", help="Also write the results as CSV to this file.")


def _emit(results, title: str, units, json_out: Optional[str], meta: dict, extra=(), notes=(),
          markdown_out: Optional[str] = None, csv_out: Optional[str] = None) -> None:
    """Render results (table, JSON, CSV, Markdown); exit 1 if any case failed validation."""
    from bigmodel.bench import environment, render_table, results_to_csv, results_to_json, results_to_markdown

    env = environment()
    if csv_out:
        write_atomic(Path(csv_out), results_to_csv(results, env))
    if markdown_out:
        command = meta.get("command", "bigmodel bench")
        if sys.argv and Path(sys.argv[0]).name in ("bigmodel", "__main__.py"):  # the command as typed
            command = " ".join(["bigmodel", *(shlex.quote(a) for a in sys.argv[1:])])
        text = results_to_markdown(results, env, command, units)
        if notes:
            text += "\n" + "\n".join(f"Note: {line}  " for line in notes) + "\n"
        write_atomic(Path(markdown_out), text)
    if json_out == "-":
        sys.stdout.write(json.dumps(results_to_json(results, env, meta), indent=2) + "\n")
    else:
        console.print(render_table(results, title, units, extra))
        where = (f"{env['gpu']}" if meta.get("device") == "cuda" else
                 f"{env['cpu']}, {env['threads']} threads, ISA {env['isa']}")
        console.print(f"[dim]{where}, torch {env['torch']}, {env['date']}[/]")
        for line in notes:
            console.print(f"[dim]{line}[/]")
        if json_out:
            write_atomic(Path(json_out), json.dumps(results_to_json(results, env, meta), indent=2) + "\n")
            console.print(f"results written to {json_out}")
    from bigmodel.bench.report import failure_lines

    exit_on_failures(failure_lines(results))


def exit_on_failures(failed: list[str]) -> None:
    """Print each case that failed validation or errored, and exit 1 if there was any."""
    if failed:
        for line in failed:
            err_console.print(f"[red]{line}[/]", highlight=False)
        err_console.print(f"[red]{len(failed)} case(s) failed validation or errored[/]")
        raise typer.Exit(1)


def choice(name: str, value: str, allowed: tuple):
    """'both' means every allowed value; otherwise exactly one of them."""
    if value == "both":
        return allowed
    if value not in allowed:
        raise typer.BadParameter(f"expected one of {', '.join(allowed)} or both, got {value!r}", param_hint=name)
    return (value,)


def _run(cases, warmup: int, repeats: int, quiet: bool, max_seconds: Optional[float] = None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bigmodel.bench import run_cases

    cases = list(cases)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task("benchmarking", total=len(cases))

        def advance(res):
            progress.update(task, advance=1, description=res.name)

        return run_cases(cases, warmup=warmup, repeats=repeats, max_seconds=max_seconds, on_result=advance)


@app.command()
def pool(
    shape: Optional[List[str]] = typer.Option(
        None, "--shape", help="Input N,C,H,W (repeatable). Default: the two standard shapes."),
    kernel_size: int = typer.Option(2, "--kernel-size", "-k", min=1, help="Kernel size, with --shape."),
    stride: Optional[int] = typer.Option(None, "--stride", "-s", min=1, help="Stride, with --shape (default: kernel)."),
    padding: int = typer.Option(0, "--padding", "-p", min=0, help="Padding, with --shape."),
    op: str = typer.Option("both", "--op", help="max, avg or both."),
    layout: str = typer.Option("both", "--layout", help="nchw, channels_last or both."),
    pass_: str = typer.Option("both", "--pass", help="fwd, fwd+bwd or both."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64 (CPU); float16/bfloat16 on CUDA."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: Optional[int] = THREADS,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    json_out: Optional[str] = JSON_OUT,
    markdown_out: Optional[str] = MARKDOWN_OUT,
    csv_out: Optional[str] = CSV_OUT,
) -> None:
    """Max and average pooling against torch.nn.functional, forward and forward+backward."""
    import_bigmodel()
    from bigmodel.bench import pool as pool_bench

    ops = choice("--op", op, ("max", "avg"))
    layouts = choice("--layout", layout, ("nchw", "channels_last"))
    passes = choice("--pass", pass_, ("fwd", "fwd+bwd"))
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    configs = None
    if shape:
        configs = [pool_bench.PoolConfig(parse_shape(s, 4, "--shape"), kernel_size, stride or kernel_size, padding)
                   for s in shape]
    cases = pool_bench.cases(configs, ops, layouts, passes, dt, device)
    results = _run(cases, warmup, repeats, quiet=json_out == "-")
    _emit(results, "pooling: bigmodel vs torch.nn.functional", ["GB"], json_out,
          {"suite": "pool", "device": device, "warmup": warmup, "repeats": repeats, "command": "bigmodel bench pool"},
          markdown_out=markdown_out, csv_out=csv_out)


@app.command()
def gemm(
    shape: Optional[List[str]] = typer.Option(
        None, "--shape", help="M,N,K of a custom product (repeatable). Default: the standard groups."),
    group: str = typer.Option("all", "--group", help="square, lstm, attention, conv or all."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64."),
    threads: Optional[int] = THREADS,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    max_seconds: float = typer.Option(8.0, "--max-seconds", min=0.1,
                                      help="Stop timing a case after this long (at least 3 rounds)."),
    refresh_peak: bool = typer.Option(False, "--refresh-peak", help="Measure the fp32 peak again (ignore the cache)."),
    json_out: Optional[str] = JSON_OUT,
    markdown_out: Optional[str] = MARKDOWN_OUT,
    csv_out: Optional[str] = CSV_OUT,
) -> None:
    """bigmodel's GEMM core against torch.mm: GFLOP/s, % of torch and % of the machine's fp32 peak."""
    import_bigmodel()
    import torch

    from bigmodel.bench import gemm as gemm_bench
    from bigmodel.bench.peak import fp32_peak

    groups = tuple(gemm_bench.GROUPS)
    if group != "all":
        if group not in groups:
            raise typer.BadParameter(f"expected one of {', '.join(groups)} or all, got {group!r}", param_hint="--group")
        groups = (group,)
    dt = parse_dtype(dtype, "cpu")
    set_threads(threads)
    cfgs = [gemm_bench.custom(*parse_shape(s, 3, "--shape")) for s in shape] if shape else gemm_bench.configs(groups)
    peak = fp32_peak(torch.get_num_threads(), refresh=refresh_peak)
    results = _run(gemm_bench.cases(cfgs, dt), warmup, repeats, quiet=json_out == "-", max_seconds=max_seconds)

    def pct(which):
        def cell(r):
            v = r.throughput("GFLOP", which)
            return "-" if v is None else f"{100 * v / peak['machine']:.0f}%"
        return cell

    def pct_torch(r):
        return "-" if r.speedup is None else f"{100 * r.speedup:.0f}%"

    extra = [("% of torch", pct_torch), ("% of peak", pct("ours")), ("torch % of peak", pct("torch"))]
    notes = [f"fp32 peak {peak['machine']:.0f} GFLOP/s ({peak['machine_isa']}, {peak['threads']} threads): "
             f"our FMA-throughput loop, per-thread CPU time, cached in {peak['cache']}"]
    if peak["active_isa"] != peak["machine_isa"]:
        notes.append(f"active path {peak['active_isa']}: its own FMA peak is {peak['active']:.0f} GFLOP/s")
    meta = {"suite": "gemm", "warmup": warmup, "repeats": repeats, "max_seconds": max_seconds,
            "peak_gflops": peak}
    _emit(results, "GEMM: bigmodel vs torch.mm", ["GFLOP"], json_out, meta, extra, notes, markdown_out, csv_out)



@app.command()
def conv(
    shape: Optional[List[str]] = typer.Option(
        None, "--shape", help="Input N,C,H,W (repeatable), with the options below. Default: the issue's five shapes."),
    out_channels: Optional[int] = typer.Option(None, "--out-channels", "-o", min=1,
                                               help="Output channels, with --shape (default: C)."),
    kernel_size: int = typer.Option(3, "--kernel-size", "-k", min=1, help="Kernel size, with --shape."),
    stride: int = typer.Option(1, "--stride", "-s", min=1, help="Stride, with --shape."),
    padding: Optional[int] = typer.Option(None, "--padding", "-p", min=0,
                                          help="Padding, with --shape (default: kernel_size // 2)."),
    groups: int = typer.Option(1, "--groups", "-g", min=1, help="Groups, with --shape (C for depthwise)."),
    layout: str = typer.Option("both", "--layout", help="nchw, channels_last or both."),
    pass_: str = typer.Option("both", "--pass", help="fwd, fwd+bwd (input, weight and bias gradients) or both."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64 (CPU); float16/bfloat16 on CUDA."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: Optional[int] = THREADS,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    max_seconds: float = typer.Option(10.0, "--max-seconds", min=0.1,
                                      help="Stop timing a case after this long (at least 3 rounds)."),
    json_out: Optional[str] = JSON_OUT,
    markdown_out: Optional[str] = MARKDOWN_OUT,
    csv_out: Optional[str] = CSV_OUT,
) -> None:
    """conv2d against torch.nn.functional.conv2d: time, GFLOP/s and % of the measured fp32 peak."""
    import_bigmodel()
    import torch

    from bigmodel.bench import conv as conv_bench

    layouts = choice("--layout", layout, ("nchw", "channels_last"))
    passes = choice("--pass", pass_, ("fwd", "fwd+bwd"))
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    configs = None
    if shape:
        configs = []
        for s in shape:
            dims = parse_shape(s, 4, "--shape")
            oc = out_channels or dims[1]
            if dims[1] % groups or oc % groups:
                raise typer.BadParameter(f"groups ({groups}) must divide the input ({dims[1]}) and output ({oc}) "
                                         "channels", param_hint="--groups")
            pad = kernel_size // 2 if padding is None else padding
            if min(dims[2], dims[3]) + 2 * pad < kernel_size:
                raise typer.BadParameter(f"kernel {kernel_size} is larger than the padded input {dims[2:]} + {pad}",
                                         param_hint="--kernel-size")
            configs.append(conv_bench.ConvConfig(dims, oc, kernel_size, stride, pad, groups))
    peak = None
    notes = ["fwd+bwd: a forward and the input, weight and bias gradients (3x the forward's flops)"]
    if device == "cpu":
        # The ceiling the GFLOP/s columns are compared with: the machine's measured fp32 peak at
        # the benchmark's thread count (bigmodel.bench.peak, cached).
        from bigmodel.bench.peak import fp32_peak

        info = fp32_peak(torch.get_num_threads())
        peak = info["machine"]
        notes.append(f"fp32 peak {peak:.0f} GFLOP/s ({info['machine_isa']}, {info['threads']} threads): our "
                     f"FMA-throughput loop, per-thread CPU time, cached in {info['cache']}")
    results = _run(conv_bench.cases(configs, layouts, passes, dt, device), warmup, repeats, quiet=json_out == "-",
                   max_seconds=max_seconds)

    def pct(which):
        def cell(r):
            v = r.throughput("GFLOP", which)
            return "-" if v is None or peak is None else f"{100 * v / peak:.0f}%"
        return cell

    extra = [("% of peak", pct("ours")), ("torch % of peak", pct("torch"))]
    meta = {"suite": "conv", "warmup": warmup, "repeats": repeats, "max_seconds": max_seconds, "peak_gflops": peak}
    _emit(results, "conv2d: bigmodel vs torch.nn.functional.conv2d", ["GFLOP"], json_out, meta, extra, notes,
          markdown_out, csv_out)


@app.command()
def lstm(
    shape: Optional[List[str]] = typer.Option(
        None, "--shape", help="B,T,I,H: batch, steps, input and hidden size (repeatable). Default: the two "
        "standard shapes, B64 T128 I256 H512 and B128 T28 I28 H128."),
    pass_: str = typer.Option("both", "--pass", help="inference, fwd+bwd or both."),
    baseline: str = typer.Option("both", "--baseline", help="lstm (torch.nn.LSTM), cell-loop (a Python loop over "
                                 "torch.nn.LSTMCell) or both."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64 (CPU); float16/bfloat16 on CUDA."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: Optional[int] = THREADS,
    warmup: int = WARMUP,
    repeats: int = typer.Option(10, "--repeats", min=1, help="Timed calls per side (median and IQR reported)."),
    json_out: Optional[str] = JSON_OUT,
    markdown_out: Optional[str] = MARKDOWN_OUT,
    csv_out: Optional[str] = CSV_OUT,
) -> None:
    """LSTM layer (bigmodel.nn.LSTM) against torch.nn.LSTM and a loop over torch.nn.LSTMCell."""
    import_bigmodel()
    from bigmodel.bench import lstm as lstm_bench

    passes = choice("--pass", pass_, ("inference", "fwd+bwd"))
    baselines = choice("--baseline", baseline, lstm_bench.BASELINES)
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    configs = None
    if shape:
        configs = [lstm_bench.LstmConfig(*parse_shape(s, 4, "--shape")) for s in shape]
    cases = lstm_bench.cases(configs, passes, baselines, dt, device)
    results = _run(cases, warmup, repeats, quiet=json_out == "-")
    _emit(results, "LSTM: bigmodel.nn.LSTM vs torch (torch column: the baseline named in the case)", ["GFLOP"],
          json_out, {"suite": "lstm", "warmup": warmup, "repeats": repeats, "command": "bigmodel bench lstm"},
          markdown_out=markdown_out, csv_out=csv_out)


@app.command()
def compare(
    old: Path = typer.Argument(..., help="Baseline results (bigmodel bench ... --json FILE)."),
    new: Path = typer.Argument(..., help="Results to check against the baseline."),
    side: str = typer.Option("ours", "--side", help="Compare bigmodel's times ('ours') or torch's ('torch')."),
    min_change: float = typer.Option(0.02, "--min-change", min=0.0, max=0.99,
                                     help="Smallest relative change ever flagged (the IQR-based threshold may be larger)."),
) -> None:
    """Per-case change between two runs; exits 1 if any case regressed beyond its noise threshold.

    A case regresses when its median grew by more than max(MIN_CHANGE x old median, old IQR + new IQR).
    """
    from rich.table import Table

    from bigmodel.bench.compare import BenchFileError, compare as compare_runs, load_results

    if side not in ("ours", "torch"):
        raise typer.BadParameter(f"expected ours or torch, got {side!r}", param_hint="--side")
    try:
        a, b = load_results(old), load_results(new)
    except BenchFileError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    result = compare_runs(a, b, side=side, min_change=min_change)
    table = Table(title=f"{old} -> {new} ({'bigmodel' if side == 'ours' else 'torch'} times)", title_justify="left")
    for col, just in (("case", "left"), ("old ms", "right"), ("new ms", "right"), ("change", "right"),
                      ("threshold", "right"), ("verdict", "left")):
        table.add_column(col, justify=just, no_wrap=col == "case")
    style = {"regression": "red", "improvement": "green", "unchanged": "dim"}
    for c in result.changes:
        table.add_row(c.key, f"{c.old_ms:.3f}", f"{c.new_ms:.3f}", f"{(c.ratio - 1) * 100:+.1f}%",
                      f"±{c.threshold_ms / c.old_ms * 100:.1f}%", f"[{style[c.verdict]}]{c.verdict}[/]")
    console.print(table)
    for label, keys in (("only in the baseline", result.only_old), ("only in the new run", result.only_new),
                        ("not timed in one run (failed or error)", result.skipped)):
        if keys:
            console.print(f"[yellow]{label}:[/] " + "; ".join(keys))
    console.print(f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s), "
                  f"{len(result.changes) - len(result.regressions) - len(result.improvements)} unchanged")
    if result.regressions:
        raise typer.Exit(1)
