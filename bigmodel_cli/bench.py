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


def _emit(results, title: str, units, json_out: Optional[str], meta: dict, markdown_out: Optional[str] = None,
          csv_out: Optional[str] = None) -> None:
    from bigmodel.bench import environment, render_table, results_to_csv, results_to_json, results_to_markdown

    env = environment()
    if csv_out:
        write_atomic(Path(csv_out), results_to_csv(results, env))
    if markdown_out:
        command = meta.get("command", "bigmodel bench")
        if sys.argv and Path(sys.argv[0]).name in ("bigmodel", "__main__.py"):  # the command as typed
            command = " ".join(["bigmodel", *(shlex.quote(a) for a in sys.argv[1:])])
        write_atomic(Path(markdown_out), results_to_markdown(results, env, command, units))
    if json_out == "-":
        sys.stdout.write(json.dumps(results_to_json(results, env, meta), indent=2) + "\n")
    else:
        console.print(render_table(results, title, units))
        where = (f"{env['gpu']}" if meta.get("device") == "cuda" else
                 f"{env['cpu']}, {env['threads']} threads, ISA {env['isa']}")
        console.print(f"[dim]{where}, torch {env['torch']}, {env['date']}[/]")
        if json_out:
            write_atomic(Path(json_out), json.dumps(results_to_json(results, env, meta), indent=2) + "\n")
            console.print(f"results written to {json_out}")
    from bigmodel.bench.report import failure_lines

    failed = failure_lines(results)
    if failed:
        for line in failed:
            err_console.print(f"[red]{line}[/]", highlight=False)
        err_console.print(f"[red]{len(failed)} case(s) failed validation or errored[/]")
        raise typer.Exit(1)


def _run(cases, warmup: int, repeats: int, quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bigmodel.bench import run_cases

    cases = list(cases)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task("benchmarking", total=len(cases))

        def advance(res):
            progress.update(task, advance=1, description=res.name)

        return run_cases(cases, warmup=warmup, repeats=repeats, on_result=advance)


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

    def choice(name, value, allowed):
        if value == "both":
            return allowed
        if value not in allowed:
            raise typer.BadParameter(f"expected one of {', '.join(allowed)} or both, got {value!r}", param_hint=name)
        return (value,)

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
          {"suite": "pool", "device": device, "warmup": warmup, "repeats": repeats, "command": "bigmodel bench pool"}, markdown_out, csv_out)


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
