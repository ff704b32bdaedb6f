"""`bigmodel data download mnist`: fetch the full MNIST files (with progress and SHA-256 checks)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app_common import console, err_console, import_bigmodel

app = typer.Typer(help="Datasets: download full MNIST (the embedded default needs no download).",
                  no_args_is_help=True)


@app.command()
def download(
    dataset: str = typer.Argument(..., help="Dataset to fetch: mnist."),
    dir_: Optional[Path] = typer.Option(None, "--dir", help="Where to put the files (default ~/.cache/bigmodel/mnist, "
                                                           "or $BIGMODEL_DATA/mnist)."),
    mirror: Optional[List[str]] = typer.Option(None, "--mirror", help="Base URL to fetch from (repeatable; tried in "
                                                                      "order). Default: $BIGMODEL_MNIST_MIRROR or "
                                                                      "the public mirrors."),
    force: bool = typer.Option(False, "--force", help="Download again even if verified files are present."),
    timeout: float = typer.Option(30.0, "--timeout", help="Network timeout per request, in seconds."),
) -> None:
    """Download the four MNIST .gz files, verify their SHA-256 and write them atomically."""
    import_bigmodel()
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from bigmodel.data import download_mnist
    from bigmodel.errors import BigmodelError

    if dataset != "mnist":
        err_console.print(f"[red]error:[/] unknown dataset {dataset!r}; `bigmodel data download` knows: mnist")
        raise typer.Exit(2)
    live = err_console.is_terminal
    tasks: dict[str, int] = {}
    last_logged: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console, disable=not live) as progress:

        def report(name: str, done: int, total: int | None) -> None:
            if live:
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=total)
                progress.update(tasks[name], completed=done, total=total)
            elif total and done == total and last_logged.get(name) != done:
                last_logged[name] = done
                err_console.print(f"{name}: {done:,} bytes", highlight=False)

        try:
            where = download_mnist(dir_, mirror or None, report, force=force, timeout=timeout)
        except BigmodelError as exc:
            progress.stop()
            err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
    console.print(f"MNIST is in {where} (SHA-256 verified); train on it with "
                  f"`bigmodel train --data mnist --data-dir {where}`", highlight=False)
