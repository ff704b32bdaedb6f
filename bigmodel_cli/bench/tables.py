"""Rich tables of benchmark results: the rendering the library leaves to the command line."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from rich.table import Table


def speedup_cell(v, faster_is_high: bool = True) -> str:
    if v is None:
        return "-"
    good = v >= 1 if faster_is_high else v <= 1
    return f"[green]{v:.2f}x[/]" if good else f"[yellow]{v:.2f}x[/]"


def results_table(results: Sequence, title: str, units: Iterable[str] = (),
                  extra: Sequence[tuple[str, Callable]] = ()) -> Table:
    """One row per case with median ± IQR for bigmodel and its baseline, throughput, speedup, and
    any `extra` (header, cell-function) columns a command adds (e.g. % of peak)."""
    from bigmodel.bench.report import fmt_ms, fmt_rate

    units = list(units)
    table = Table(title=title, title_justify="left")
    table.add_column("case", no_wrap=True)
    table.add_column("bigmodel ms", justify="right")
    table.add_column("torch ms", justify="right")
    for u in units:
        table.add_column(f"bigmodel {u}/s", justify="right")
        table.add_column(f"torch {u}/s", justify="right")
    table.add_column("speedup", justify="right")
    for header, _ in extra:
        table.add_column(header, justify="right")
    for r in results:
        if r.status != "ok":
            table.add_row(r.name, f"[red]{r.status.upper()}[/]", "-", *(["-"] * (2 * len(units))), "-",
                          *(["-"] * len(extra)))
            continue
        rates = []
        for u in units:
            rates += [fmt_rate(r.throughput(u, "ours")), fmt_rate(r.throughput(u, "torch"))]
        table.add_row(r.name, fmt_ms(r.ours), fmt_ms(r.torch), *rates, speedup_cell(r.speedup),
                      *(fn(r) for _, fn in extra))
    return table


def impls_table(results: Sequence, title: str, impls: Sequence[str]) -> Table:
    """Cases with several implementations and memory (attention): each one's median ms, bigmodel's
    GFLOP/s, its speedup over each other implementation, and each one's peak memory growth."""
    table = Table(title=title, title_justify="left")
    table.add_column("case", no_wrap=True)
    for impl in impls:
        table.add_column(f"{impl} ms", justify="right")
    table.add_column("bigmodel GFLOP/s", justify="right")
    others = [i for i in impls if i != "bigmodel"]
    for impl in others:
        table.add_column(f"vs {impl}", justify="right")
    table.add_column(f"peak MiB ({' / '.join(impls)})", justify="right")
    for r in results:
        if r.status != "ok":
            table.add_row(r.name, f"[red]{r.status.upper()}[/]", *(["-"] * (len(impls) + len(others) + 1)))
            continue
        cells = ["-" if r.timings.get(i) is None else f"{r.timings[i].median_ms:,.1f} ± {r.timings[i].iqr_ms:,.1f}"
                 for i in impls]
        rate = r.throughput("GFLOP")
        mem = " / ".join("-" if r.peak_mib.get(i) is None else f"{r.peak_mib[i]:,.0f}" for i in impls)
        table.add_row(r.name, *cells, "-" if rate is None else f"{rate:,.1f}",
                      *(speedup_cell(r.speedup_over(i)) for i in others), mem)
    return table


def breakdown_table(bd: dict) -> Table:
    """A model breakdown (profile.Breakdown.to_dict()): self CPU ms per step by layer family."""
    table = Table(title=f"{bd['model']} {bd['pass']}: self CPU time per step by layer family "
                        f"(torch.profiler, median of {bd['profiled_steps']} steps)", title_justify="left")
    for col in ("family", "bigmodel ms", "share", "torch ms", "share", "bigmodel/torch"):
        table.add_column(col, justify="left" if col == "family" else "right")

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    for r in bd["rows"]:
        table.add_row(r["family"], f"{r['bigmodel_ms']:.3f}", pct(r["bigmodel_share"]), f"{r['torch_ms']:.3f}",
                      pct(r["torch_share"]), speedup_cell(r["ratio"], faster_is_high=False))
    totals = bd["total_ms"]
    table.add_row("total", f"{totals.get('bigmodel', 0.0):.3f}", "", f"{totals.get('torch', 0.0):.3f}", "", "")
    return table


def print_family(console, name: str, results: Sequence, title: str, units: Iterable[str]) -> None:
    """The table(s) of one family of a suite run: attention families get every implementation."""
    from bigmodel.bench.attention import IMPLS

    if name.endswith("attention"):
        console.print(impls_table(results, title, [i for i in IMPLS if any(i in r.timings for r in results)]
                                  or IMPLS))
    else:
        console.print(results_table(results, title, units))
    for r in results:
        if "breakdown" in r.extra:
            console.print(breakdown_table(r.extra["breakdown"]))
            for fam, note in r.extra["breakdown"]["notes"].items():
                console.print(f"[dim]{fam}: {note}[/]")
