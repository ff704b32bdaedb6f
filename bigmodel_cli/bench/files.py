"""`bigmodel bench plot` and `bigmodel bench compare`: commands on saved JSON documents
(today's files and those written before the one result type alike)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..app_common import console
from . import common as C


def _load(path: Path) -> dict:
    from bigmodel.bench.compare import BenchFileError, load_results

    try:
        return load_results(path)
    except BenchFileError as exc:
        C.fail(str(exc))


def plot_cmd(
    results_json: Path = typer.Argument(..., help="A suite run's JSON (bigmodel bench all --json-file FILE)."),
    out: Path = typer.Option(..., "--out", "-o", help="The PNG to write."),
) -> None:
    """Redraw the scaling curves (attention time and memory vs L, conv time vs batch, GEMM GFLOP/s
    vs size) from a saved suite JSON, without running anything."""
    from bigmodel.bench.plot import PlotError, draw

    doc = _load(results_json)
    if not any(str(r.get("suite", "")).startswith("sweep:") for r in doc["results"]):
        C.fail(f"{results_json}: no sweep results to plot (run `bigmodel bench all` with a suite that has "
               "[sweeps.*] tables)")
    try:
        draw(doc, out)
    except (OSError, PlotError) as exc:
        C.fail(f"--out: {exc}")
    console.print(f"scaling curves drawn in {out}")


def compare(
    old: Path = typer.Argument(..., help="Baseline results (bigmodel bench ... --json-file FILE)."),
    new: Path = typer.Argument(..., help="Results to check against the baseline."),
    side: str = typer.Option("ours", "--side", help="Compare bigmodel's times ('ours') or torch's ('torch')."),
    min_change: float = typer.Option(0.02, "--min-change", min=0.0, max=0.99,
                                     help="Smallest relative change ever flagged (the IQR-based threshold may be larger)."),
) -> None:
    """Per-case change between two runs; exits 1 if any case regressed beyond its noise threshold.

    A case regresses when its median grew by more than max(MIN_CHANGE x old median, old IQR + new IQR).
    """
    from rich.table import Table

    from bigmodel.bench.compare import compare as compare_runs

    if side not in ("ours", "torch"):
        raise typer.BadParameter(f"expected ours or torch, got {side!r}", param_hint="--side")
    result = compare_runs(_load(old), _load(new), side=side, min_change=min_change)
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
                        ("not timed in one run (failed or error)", result.skipped),
                        ("different params or work (not the same measurement)", result.differs)):
        if keys:
            console.print(f"[yellow]{label}:[/] " + "; ".join(keys))
    console.print(f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s), "
                  f"{len(result.changes) - len(result.regressions) - len(result.improvements)} unchanged")
    if result.regressions:
        raise typer.Exit(1)
