"""`bigmodel bench attention`: fused attention against torch's SDPA (flash) and a naive
softmax(QK^T)V, forward and forward+backward, causal and not, with peak memory growth.

Kept beside bench.py (it registers itself on bench's Typer app when imported) so that the suites
of different issues do not edit the same file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .app_common import console, err_console, import_bigmodel, parse_dtype, parse_shape, set_threads, write_atomic
from .bench import JSON_OUT, THREADS, app, choice, exit_on_failures


@app.command()
def attention(
    shape: Optional[List[str]] = typer.Option(
        None, "--shape", help="B,H,L,E with S = L (repeatable). Default: the four standard shapes."),
    causal: str = typer.Option("both", "--causal", help="yes, no or both."),
    pass_: str = typer.Option("both", "--pass", help="fwd, fwd+bwd or both."),
    naive: bool = typer.Option(True, "--naive/--no-naive", help="Also time the naive softmax(QK^T)V."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure each one's peak memory growth."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64 (CPU); float16/bfloat16 on CUDA."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: Optional[int] = THREADS,
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed calls before timing."),
    repeats: int = typer.Option(10, "--repeats", min=1, help="Timed calls per implementation (median and IQR)."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", min=1.0,
                                      help="Stop a case's timing rounds after this long (at least 3 rounds)."),
    json_out: Optional[str] = JSON_OUT,
) -> None:
    """Fused attention against torch's SDPA (flash) and a naive softmax(QK^T)V, forward and
    forward+backward, causal and not, with each one's peak memory growth."""
    import_bigmodel()
    from bigmodel.bench import attention as attn_bench
    from bigmodel.bench import environment

    causal_flags = tuple(c == "yes" for c in choice("--causal", causal, ("no", "yes")))
    passes = choice("--pass", pass_, ("fwd", "fwd+bwd"))
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    configs = [attn_bench.AttnConfig(*parse_shape(s, 4, "--shape")) for s in shape] if shape else None
    quiet = json_out == "-"

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    case_list = list(attn_bench.cases(configs, causal_flags, passes, dt, device, naive))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task("benchmarking", total=len(case_list))
        results = attn_bench.run(case_list, warmup, repeats, max_seconds, memory,
                                 on_result=lambda r: progress.update(task, advance=1, description=r.name))

    env = environment()
    meta = {"suite": "attention", "warmup": warmup, "repeats": repeats, "max_seconds": max_seconds}
    doc = attn_bench.results_to_json(results, env, meta)
    if quiet:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        console.print(attn_bench.render_table(results, "attention: bigmodel vs torch SDPA (flash) vs naive"))
        for case, ratio in attn_bench.causal_speedups(results):
            console.print(f"causal speedup (non-causal time / causal time), bigmodel {case}: {ratio:.2f}x")
        for r in results:
            for impl, why in r.skipped.items():
                console.print(f"[dim]{r.name}: {impl} skipped: {why}[/]")
        console.print(f"[dim]{env['cpu']}, {env['threads']} threads, ISA {env['isa']}, torch {env['torch']}, "
                      f"{env['date']}[/]")
        if json_out:
            write_atomic(Path(json_out), json.dumps(doc, indent=2) + "\n")
            console.print(f"results written to {json_out}")
    from bigmodel.bench.report import failure_lines

    exit_on_failures(failure_lines(results))
