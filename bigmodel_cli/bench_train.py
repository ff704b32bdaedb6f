"""`bigmodel bench train`: time per training step and epoch, --backend bigmodel vs --backend torch.

Kept beside bench.py (it registers itself on bench's Typer app when imported) so that the suites
of different issues do not edit the same file."""

from __future__ import annotations

from typing import List, Optional

import typer

from .app_common import console, err_console, import_bigmodel, set_threads
from .bench import CSV_OUT, JSON_OUT, MARKDOWN_OUT, THREADS, _emit, _run, app


@app.command("train")
def train_epoch(
    model: Optional[List[str]] = typer.Option(None, "--model", "-m",
                                              help="Model(s) to time (repeatable). Default: cnn, lstm, transformer, mlp."),
    data: str = typer.Option("embedded", "--data", help="Dataset, as for `bigmodel train`."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size (default: the model's)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Cycle through this many batches (default: an epoch's)."),
    threads: Optional[int] = THREADS,
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed steps per side before timing."),
    repeats: int = typer.Option(126, "--repeats", min=1, help="Timed steps per side, alternating (median and IQR)."),
    json_out: Optional[str] = JSON_OUT,
    markdown_out: Optional[str] = MARKDOWN_OUT,
    csv_out: Optional[str] = CSV_OUT,
) -> None:
    """Time per training step and epoch: --backend bigmodel against --backend torch, same weights and data."""
    import_bigmodel()
    from bigmodel.bench import train as train_bench
    from bigmodel.errors import BigmodelError

    set_threads(threads)
    try:
        cases = list(train_bench.cases(model or train_bench.DEFAULT_MODELS, data, batch_size, steps))
    except BigmodelError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    results = _run(cases, warmup, repeats, quiet=json_out == "-")
    _emit(results, "training step: --backend bigmodel vs --backend torch", ["samples"], json_out,
          {"suite": "train", "warmup": warmup, "repeats": repeats, "command": "bigmodel bench train"},
          markdown_out=markdown_out, csv_out=csv_out)
    if json_out != "-":
        from bigmodel.bench.train import epoch_lines

        for line in epoch_lines(results):
            console.print(line, highlight=False)
