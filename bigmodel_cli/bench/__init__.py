"""`bigmodel bench ...`: time bigmodel's kernels and models against PyTorch's, side by side.

Every command is a plain function in its own module, registered here and nowhere else."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from ..jsonout import OldJsonSpelling
from . import all as all_cmd
from . import attention, conv, files, gemm, lstm, model, pool


class BenchGroup(OldJsonSpelling, TyperGroup):
    pass


app = typer.Typer(cls=BenchGroup, help="Time bigmodel's kernels against PyTorch's in the same process.",
                  no_args_is_help=True)

COMMANDS = [
    ("pool", pool.pool), ("gemm", gemm.gemm), ("conv", conv.conv), ("lstm", lstm.lstm),
    ("attention", attention.attention), ("model", model.model_cmd), ("all", all_cmd.run_all),
    ("plot", files.plot_cmd), ("compare", files.compare),
]
for _name, _fn in COMMANDS:
    app.command(_name)(_fn)
app.command("train", hidden=True, deprecated=True)(model.train_alias)
