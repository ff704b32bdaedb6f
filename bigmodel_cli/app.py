"""Top-level Typer app: `bigmodel --version`, `bigmodel info`, and the sub-command groups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .app_common import console, import_bigmodel
from .jsonout import JSON_FILE, JSON_FLAG, emit_json

app = typer.Typer(
    name="bigmodel",
    help="Train, evaluate and benchmark neural networks on bigmodel's hand-written kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _version_callback(value: bool) -> None:
    if value:
        from bigmodel._version import __version__

        console.print(f"bigmodel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """bigmodel: kernels, models, training and benchmarks."""


@app.command()
def info(
    as_json: bool = JSON_FLAG,
    json_file: Optional[Path] = JSON_FILE,
    env: bool = typer.Option(False, "--env", help="A plain-text environment report to paste into a bug report."),
) -> None:
    """What was built (ISA paths, CUDA) and what runs here (CPU, threads, ops and their backends)."""
    bigmodel = import_bigmodel()
    if env:
        from bigmodel.bench.report import environment_report

        sys.stdout.write(environment_report())
        return
    import torch

    from bigmodel.bench.report import cpu_model

    data = dict(bigmodel.build_info())
    data["torch_runtime"] = torch.__version__
    data["torch_threads"] = torch.get_num_threads()
    data["cpu_model"] = cpu_model()
    data["cuda_available"] = torch.cuda.is_available()
    emit_json(data, as_json, json_file)
    if as_json:
        return

    from rich.table import Table

    t = Table(title=f"bigmodel {data['version']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("CPU", f"{data['cpu_model']} ({data['cpu'] or 'cpuid brand unavailable'})")
    t.add_row("torch", f"{data['torch_runtime']} (built against {data['torch_built_against']}), "
                        f"{data['torch_threads']} threads")
    t.add_row("ISA paths compiled", ", ".join(data["isa_compiled"]))
    t.add_row("ISA paths this CPU runs", ", ".join(data["isa_supported"]))
    t.add_row("ISA path active", f"{data['isa_active']} (best: {data['isa_best']}; override with BIGMODEL_ISA)")
    cuda = "yes" if data["cuda_compiled"] else "no"
    if data["cuda_compiled"]:
        cuda += f" (archs {', '.join(data['cuda_archs'])}; {data['nvcc']})"
    t.add_row("CUDA kernels compiled", cuda)
    t.add_row("CUDA device available", "yes" if data["cuda_available"] else "no")
    t.add_row("build", f"{data['build_type']}, {data['compiler']}")
    console.print(t)

    ops = Table(title="operators (torch.ops.bigmodel.*)", title_justify="left")
    ops.add_column("op")
    ops.add_column("cpu", justify="center")
    ops.add_column("cuda", justify="center")
    for op in data["ops"]:
        if "composite" in op["backends"]:  # runs wherever the ops it is made of run
            ops.add_row(op["name"], "[green]composite[/]", "[green]composite[/]")
        else:
            ops.add_row(op["name"], *("[green]yes[/]" if b in op["backends"] else "[dim]-[/]" for b in ("cpu", "cuda")))
    console.print(ops)


def _register_subcommands() -> None:
    from . import bench, data, evaluate, train

    app.add_typer(bench.app, name="bench")
    app.command("train", context_settings={"help_option_names": ["--help", "-h"]})(train.train)
    app.command("eval")(evaluate.evaluate)
    app.add_typer(data.app, name="data")


_register_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
