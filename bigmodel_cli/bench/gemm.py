"""`bigmodel bench gemm`: the GEMM core against torch.mm, with % of torch and of the fp32 peak."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..app_common import import_bigmodel, parse_dtype, parse_shape, set_threads
from . import common as C
from .common import bench, pct_of, peak_line


def gemm(
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="M,N,K of a custom product (repeatable). "
                                              "Default: the [gemm] groups of benchmarks/suite.toml."),
    group: str = typer.Option("all", "--group", help="square, lstm, attention, conv or all."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64."),
    threads: Optional[int] = C.THREADS, warmup: Optional[int] = C.WARMUP, repeats: Optional[int] = C.REPEATS,
    max_seconds: Optional[float] = C.MAX_SECONDS,
    refresh_peak: bool = typer.Option(False, "--refresh-peak", help="Measure the fp32 peak again (ignore the cache)."),
    as_json: bool = C.JSON_FLAG, json_file=C.JSON_FILE,
    markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """bigmodel's GEMM core against torch.mm: GFLOP/s, % of torch and % of the machine's fp32 peak."""
    import_bigmodel()
    import torch

    from bigmodel.bench import gemm as G
    from bigmodel.bench.peak import fp32_peak

    fam = C.suite_family("gemm")
    groups = None
    if group != "all":
        if group not in G.GROUPS:
            raise typer.BadParameter(f"expected one of {', '.join(G.GROUPS)} or all, got {group!r}",
                                     param_hint="--group")
        groups = (group,)
    shapes = [parse_shape(s, 3, "--shape") for s in shape] if shape else None
    if shapes:
        groups = ()
    dt = parse_dtype(dtype, "cpu")
    set_threads(threads)
    peak = fp32_peak(torch.get_num_threads(), refresh=refresh_peak)
    _, line = peak_line(torch.get_num_threads())
    notes = [line]
    if peak["active_isa"] != peak["machine_isa"]:
        notes.append(f"active path {peak['active_isa']}: its own FMA peak is {peak['active']:.0f} GFLOP/s")
    cases = fam.make(groups=groups, shapes=shapes if shapes else ([] if groups else None), dtype=dt)
    extra = [("% of torch", lambda r: "-" if r.speedup is None else f"{100 * r.speedup:.0f}%"),
             ("% of peak", pct_of(peak["machine"], "ours")), ("torch % of peak", pct_of(peak["machine"], "torch"))]
    bench("gemm", cases, C.timing(fam, warmup, repeats, max_seconds), C.Output(as_json, json_file, csv_out,
           markdown_out), {"peak_gflops": peak}, "GEMM: bigmodel vs torch.mm", ["GFLOP"], extra, notes)
