"""Helpers shared by the CLI's sub-commands: consoles, option parsing, atomic writes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

# Tables are wide; when output goes to a file or pipe, don't wrap them at 80 columns.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True, soft_wrap=True)  # messages stay on one line when captured


def import_bigmodel():
    """Import the library, turning a broken install or a bad BIGMODEL_ISA into a clean exit."""
    try:
        import bigmodel
    except (ImportError, ValueError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    return bigmodel


def parse_shape(text: str, ndim: int, option: str) -> tuple[int, ...]:
    """'64,64,56,56' or '64x64x56x56' -> (64, 64, 56, 56)."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"expected {ndim} comma-separated integers, got {text!r}", param_hint=option)
    if len(dims) != ndim or any(d <= 0 for d in dims):
        raise typer.BadParameter(f"expected {ndim} positive integers, got {text!r}", param_hint=option)
    return dims


def parse_dtype(name: str, device: str = "cpu"):
    import torch

    table = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise typer.BadParameter(f"expected one of {', '.join(table)}, got {name!r}", param_hint="--dtype")
    if device == "cpu" and name in ("float16", "bfloat16"):
        raise typer.BadParameter(f"{name} kernels run on CUDA only; use float32 or float64 on the CPU",
                                 param_hint="--dtype")
    if device not in ("cpu", "cuda"):
        raise typer.BadParameter(f"expected cpu or cuda, got {device!r}", param_hint="--device")
    if device == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("no CUDA device is available here", param_hint="--device")
    return table[name]


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temporary file in the same folder and a rename."""
    from bigmodel._io import write_text

    write_text(path, text)
