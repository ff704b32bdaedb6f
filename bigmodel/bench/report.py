"""Environment header and rendering of benchmark results (Rich table, JSON)."""

from __future__ import annotations

import datetime as _dt
import json
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


def results_to_markdown(results: Sequence[CaseResult], env: dict[str, Any], command: str,
                        units: Iterable[str] = ()) -> str:
    """A Markdown table of results, headed by the command and the environment that produced it."""
    units = list(units)
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['threads']} threads, ISA path {env['isa']}; "
        f"torch {env['torch']}, bigmodel {env['bigmodel']}"
        + (f" ({env['git_commit']})" if env.get("git_commit") else "") + f"; {env['date']}",
        "",
        "| case | bigmodel ms | torch ms | " + "".join(f"bigmodel {u}/s | torch {u}/s | " for u in units)
        + "speedup |",
        "|---|---:|---:|" + "---:|---:|" * len(units) + "---:|",
    ]
    for r in results:
        if r.status != "ok":
            lines.append(f"| {r.name} | {r.status.upper()}: {r.message} | | " + "| | " * len(units) + "|")
            continue
        rates = "".join(f"{_fmt_rate(r.throughput(u, 'ours'))} | {_fmt_rate(r.throughput(u, 'torch'))} | "
                        for u in units)
        lines.append(f"| {r.name} | {_fmt_ms(r.ours)} | {_fmt_ms(r.torch)} | {rates}{r.speedup:.2f}x |")
    return "\n".join(lines) + "\n"


def results_to_csv(results: Sequence[CaseResult], env: dict[str, Any]) -> str:
    """CSV with one row per case; the environment comes first as '# key: value' comment lines."""
    import csv
    import io

    buf = io.StringIO()
    for k, v in env.items():
        buf.write(f"# {k}: {v}\n")
    units = sorted({u for r in results for u in r.work})
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["suite", "case", "status", "bigmodel_median_ms", "bigmodel_iqr_ms", "torch_median_ms",
                     "torch_iqr_ms", "speedup", *[f"bigmodel_{u}_per_s" for u in units],
                     *[f"torch_{u}_per_s" for u in units], "params", "message"])

    def num(v):
        return "" if v is None else f"{v:.6g}"

    for r in results:
        writer.writerow([
            r.suite, r.name, r.status,
            num(r.ours.median_ms if r.ours else None), num(r.ours.iqr_ms if r.ours else None),
            num(r.torch.median_ms if r.torch else None), num(r.torch.iqr_ms if r.torch else None),
            num(r.speedup), *[num(r.throughput(u, "ours")) for u in units],
            *[num(r.throughput(u, "torch")) for u in units],
            json.dumps(r.params, sort_keys=True), r.message,
        ])
    return buf.getvalue()


def _parallel_backend() -> str:
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend"):
            return line.strip()
    return "ATen parallel backend unknown"


def environment_report() -> str:
    """A paste-ready description of this installation for bug reports (`bigmodel info --env`)."""
    import sys

    import bigmodel

    info = bigmodel.build_info()
    env = environment()
    lines = [
        f"bigmodel:        {env['bigmodel']} (built against torch {info['torch_built_against']}, "
        f"{info['build_type']}, {info['compiler']})",
        f"git commit:      {env['git_commit'] or 'n/a (not run from a git checkout)'}",
        f"torch:           {torch.__version__} (CUDA {torch.version.cuda or 'none'}; {_parallel_backend()})",
        f"python:          {sys.version.split()[0]} ({platform.python_implementation()})",
        f"os:              {platform.platform()}",
        f"cpu:             {env['cpu']} ({bigmodel._C.build_info()['cpu'] or 'no cpuid brand'}), {env['cores']} logical cores",
        f"threads:         {env['threads']} (torch.get_num_threads)",
        f"ISA paths:       compiled {', '.join(info['isa_compiled'])}; runnable {', '.join(info['isa_supported'])}; "
        f"active {info['isa_active']}",
        f"BIGMODEL_ISA:    {os.environ.get('BIGMODEL_ISA', '(unset)')}",
        f"OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', '(unset)')}",
        f"CUDA kernels:    {'compiled for ' + ', '.join(info['cuda_archs']) + ' (' + info['nvcc'] + ')' if info['cuda_compiled'] else 'not compiled'}",
        f"GPU:             {env['gpu'] or 'none visible'}",
        f"ops:             {', '.join(op['name'] + '[' + '/'.join(op['backends']) + ']' for op in info['ops'])}",
    ]
    return "\n".join(lines) + "\n"
