"""`bigmodel eval CHECKPOINT`: loss, accuracy, per-class precision/recall/F1 and the confusion
matrix (or perplexity for a language model) of a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app_common import console, err_console, import_bigmodel
from .jsonout import JSON_FILE, JSON_FLAG, emit_json

MAX_MATRIX_CLASSES = 30  # wider confusion matrices go to --json / --json-file only


def evaluate(
    checkpoint: str = typer.Argument(..., help="A checkpoint (best.pt / last.pt) or a run folder (uses best.pt)."),
    split: Optional[str] = typer.Option(None, "--split", help="train, val or test (default: test if the data has one, else val)."),
    data: Optional[str] = typer.Option(None, "--data", help="Evaluate on other data (default: the checkpoint's)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the MNIST IDX files."),
    batch_size: int = typer.Option(256, "--batch-size", help="Batch size."),
    backend: str = typer.Option("bigmodel", "--backend", help="bigmodel or torch; checkpoints from either load in both."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = JSON_FLAG,
    json_file: Optional[Path] = JSON_FILE,
    results_file: Optional[Path] = typer.Option(None, "--results-file", hidden=True,
                                                help="Deprecated spelling of --json-file."),
) -> None:
    """Evaluate a checkpoint from `bigmodel train`."""
    import_bigmodel()
    from bigmodel.engine import evaluate_checkpoint
    from bigmodel.errors import BigmodelError
    from bigmodel.models import check_backend

    try:
        check_backend(backend)
        res = evaluate_checkpoint(checkpoint, split, data, data_dir, batch_size, backend, device)
    except BigmodelError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if results_file is not None:
        err_console.print("[yellow]--results-file is deprecated and goes in the next release: use --json-file[/]")
        json_file = json_file or results_file
    emit_json(res, as_json, json_file)
    if as_json:
        return
    render(res)
    if json_file is not None:
        console.print(f"results written to {json_file}")


def render(res: dict) -> None:
    from rich.table import Table

    t = Table(show_header=False, title=f"{res['model']} from {res['checkpoint']}", title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("data", f"{res['data']}, split {res['split']} ({res['count']:,} "
                      f"{'tokens' if res['task'] == 'lm' else 'examples'})")
    t.add_row("trained", f"epoch {res['epoch']}, step {res['step']}, backend {res['trained_backend']} "
                         f"(evaluated on {res['backend']})")
    t.add_row("loss", f"{res['loss']:.4f}")
    if res["task"] == "lm":
        t.add_row("perplexity", f"{res['perplexity']:.3f}")
        t.add_row("next-token accuracy", f"{100 * res['accuracy']:.2f}%")
    else:
        t.add_row("accuracy", f"{100 * res['accuracy']:.2f}%")
        t.add_row("macro F1", f"{res['macro_f1']:.4f}")
    console.print(t)
    if res["task"] == "lm":
        return
    pc = Table(title="per class", title_justify="left")
    for col in ("class", "precision", "recall", "F1", "support"):
        pc.add_column(col, justify="right")
    for c in res["per_class"]:
        pc.add_row(c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"]))
    console.print(pc)
    classes, cm = res["classes"], res["confusion_matrix"]
    if len(classes) > MAX_MATRIX_CLASSES:
        console.print(f"[dim]confusion matrix ({len(classes)} classes) not shown; see --json or --json-file[/]")
        return
    m = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left")
    m.add_column("true \\ pred", justify="right", style="bold")
    for c in classes:
        m.add_column(c, justify="right")
    for i, row in enumerate(cm):
        m.add_row(classes[i], *(f"[green]{v}[/]" if i == j else (f"[red]{v}[/]" if v else "[dim]0[/]")
                                for j, v in enumerate(row)))
    console.print(m)
