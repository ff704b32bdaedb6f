"""Environment header and rendering of benchmark results (Rich table, JSON)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from typing import Any, Callable, Iterable, Sequence

import torch

from .harness import CaseResult


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(path: str | None = None) -> str | None:
    """The commit of the git checkout at `path` (default: the working directory), if any."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=path or os.getcwd(),
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Everything a figure depends on: machine, threads, ISA path, versions, commit, date."""
    import bigmodel

    info = bigmodel.build_info()
    env = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "isa": bigmodel.active_isa(),
        "torch": torch.__version__,
        "bigmodel": bigmodel.__version__,
        "cuda_compiled": info["cuda_compiled"],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return env


def _fmt_ms(t) -> str:
    if t is None:
        return "-"
    return f"{t.median_ms:.3f} ± {t.iqr_ms:.3f}"


def _fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if v < 10_000 else f"{v:,.0f}"


def render_table(results: Sequence[CaseResult], title: str, units: Iterable[str] = (),
                 extra: Sequence[tuple[str, Callable[[CaseResult], str]]] = ()):
    """A Rich table: one row per case with median ± IQR for both sides, throughput, speedup, and
    any `extra` (header, cell-function) columns a suite adds (e.g. % of peak)."""
    from rich.table import Table

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
        sp = r.speedup
        sp_txt = f"[green]{sp:.2f}x[/]" if sp >= 1 else f"[yellow]{sp:.2f}x[/]"
        rates = []
        for u in units:
            rates += [_fmt_rate(r.throughput(u, "ours")), _fmt_rate(r.throughput(u, "torch"))]
        table.add_row(r.name, _fmt_ms(r.ours), _fmt_ms(r.torch), *rates, sp_txt, *(fn(r) for _, fn in extra))
    return table


def failure_lines(results: Sequence[CaseResult]) -> list[str]:
    return [f"{r.name}: {r.status}: {r.message}" for r in results if r.status != "ok"]


def results_to_json(results: Sequence[CaseResult], env: dict[str, Any] | None = None,
                    meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema": "bigmodel-bench/1",
        "environment": env if env is not None else environment(),
        "meta": meta or {},
        "results": [r.to_dict() for r in results],
    }
