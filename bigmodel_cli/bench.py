"""`bigmodel bench ...`: time bigmodel's kernels against PyTorch's, side by side."""

from __future__ import annotations

import json
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


def _emit(results, title: str, units, json_out: Optional[str], meta: dict) -> None:
    from bigmodel.bench import environment, render_table, results_to_json

    env = environment()
    if json_out == "-":
        sys.stdout.write(json.dumps(results_to_json(results, env, meta), indent=2) + "\n")
    else:
        console.print(render_table(results, title, units))
        console.print(f"[dim]{env['cpu']}, {env['threads']} threads, ISA {env['isa']}, torch {env['torch']}, "
                      f"{env['date']}[/]")
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
          {"suite": "pool", "warmup": warmup, "repeats": repeats})
