"""What every `bigmodel bench` command shares: its options, the run with a progress bar, and
the one emitter (table on stdout, or the JSON document with --json; files with --json-file,
--csv, --markdown; exit 1 when a case failed)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from ..app_common import console, err_console, write_atomic
from ..jsonout import JSON_FILE, JSON_FLAG, emit_json

THREADS = typer.Option(None, "--threads", min=1, help="Threads for both sides (default: torch's default).")
WARMUP = typer.Option(None, "--warmup", min=0, help="Untimed calls before timing (default: the suite's).")
REPEATS = typer.Option(None, "--repeats", min=1, help="Timed calls per side, alternating (median and IQR; "
                       "default: the suite's).")
MAX_SECONDS = typer.Option(None, "--max-seconds", min=0.1, help="Stop timing a case after this long, after at "
                           "least 3 rounds (default: the suite's).")
MARKDOWN_OUT = typer.Option(None, "--markdown", help="Also write the results as a Markdown table to this file.")
CSV_OUT = typer.Option(None, "--csv", help="Also write the results as CSV to this file.")
DTYPE = typer.Option("float32", "--dtype", help="float32 or float64 (CPU); float16/bfloat16 on CUDA.")
DEVICE = typer.Option("cpu", "--device", help="cpu or cuda.")
__all__ = ["JSON_FILE", "JSON_FLAG"]


class Output:
    """The output options of one bench command, as given."""

    def __init__(self, as_json: bool, json_file: Optional[Path], csv: Optional[str] = None,
                 markdown: Optional[str] = None):
        self.as_json, self.json_file, self.csv, self.markdown = as_json, json_file, csv, markdown


def fail(message: str) -> None:
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def choice(name: str, value: str, allowed: tuple):
    """'both' means every allowed value; None (not given) the suite's; otherwise exactly one."""
    if value is None:
        return None
    if value == "both":
        return allowed
    if value not in allowed:
        raise typer.BadParameter(f"expected one of {', '.join(allowed)} or both, got {value!r}", param_hint=name)
    return (value,)


def timing(family, warmup, repeats, max_seconds) -> dict:
    """The suite family's timing with the command line's overrides."""
    t = dict(family.timing)
    t.update({k: v for k, v in (("warmup", warmup), ("repeats", repeats), ("max_seconds", max_seconds))
              if v is not None})
    return t


def suite_family(name: str):
    from bigmodel.bench.suite import SuiteError, family

    try:
        return family(name)
    except SuiteError as exc:
        fail(str(exc))


def progress(quiet: bool, total: int, description: str = "benchmarking"):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, transient=True, disable=quiet)
    return bar, bar.add_task(description, total=total)


def run(cases, t: dict, quiet: bool):
    """Validate and time `cases` with the timing `t`, a progress bar on stderr."""
    from bigmodel.bench import run_cases

    cases = list(cases)
    bar, task = progress(quiet, len(cases))
    with bar:
        return run_cases(cases, t["warmup"], t["repeats"], t["max_seconds"],
                         on_result=lambda r: bar.update(task, advance=1, description=r.name))


def command_line(default: str) -> str:
    if sys.argv and Path(sys.argv[0]).name in ("bigmodel", "__main__.py"):  # the command as typed
        return " ".join(["bigmodel", *(shlex.quote(a) for a in sys.argv[1:])])
    return default


def emit(results, out: Output, meta: dict, render, markdown_text=None) -> None:
    """Write the files asked for, then either the JSON document on stdout (--json) or the
    tables (`render(env)` prints them); exit 1 if any case failed validation or errored."""
    from bigmodel.bench import environment, results_to_csv, results_to_json, results_to_markdown
    from bigmodel.bench.report import failure_lines

    env = environment()
    doc = results_to_json(results, env, meta)
    if out.csv:
        write_atomic(Path(out.csv), results_to_csv(results, env))
    if out.markdown:
        write_atomic(Path(out.markdown), markdown_text(env) if markdown_text else
                     results_to_markdown(results, env, command_line(meta.get("command", "bigmodel bench")),
                                         meta.get("units", ())))
    emit_json(doc, out.as_json, out.json_file)
    if not out.as_json:
        render(env)
        console.print(f"[dim]{where(env, meta)}[/]")
        if out.json_file:
            console.print(f"results written to {out.json_file}")
    exit_on_failures(failure_lines(results))


def where(env: dict, meta: dict) -> str:
    machine = env["gpu"] if meta.get("device") == "cuda" else f"{env['cpu']}, {env['threads']} threads, ISA {env['isa']}"
    return f"{machine}, torch {env['torch']}, {env['date']}"


def exit_on_failures(failed: list[str]) -> None:
    """Print each case that failed validation or errored, and exit 1 if there was any."""
    if failed:
        for line in failed:
            err_console.print(f"[red]{line}[/]", highlight=False)
        err_console.print(f"[red]{len(failed)} case(s) failed validation or errored[/]")
        raise typer.Exit(1)


def config(cls, option: str, **values):
    """A family config from command-line values: its own checks, reported against `option`."""
    from bigmodel.errors import ConfigError

    try:
        return cls(**values)
    except ConfigError as exc:
        field = str(exc).split(":", 1)[0]
        hints = {"groups": "--groups", "kernel": "--kernel-size", "padding": "--padding", "stride": "--stride",
                 "out_channels": "--out-channels"}
        raise typer.BadParameter(str(exc), param_hint=hints.get(field, option))


def bench(family: str, cases, t, out: Output, meta: dict, title: str, units, extra=(), notes=()):
    results = run(cases, t, out.as_json)
    meta = {"suite": family, **t, "command": f"bigmodel bench {family}", "units": list(units), **meta}

    def render(env):
        from .tables import results_table

        console.print(results_table(results, title, units, extra))
        for line in notes:
            console.print(f"[dim]{line}[/]")
    emit(results, out, meta, render)


def peak_line(threads: int, refresh: bool = False):
    """The machine's measured fp32 peak (bigmodel.bench.peak, cached) and a line that says so."""
    from bigmodel.bench.peak import fp32_peak

    info = fp32_peak(threads, refresh=refresh)
    return info["machine"], (f"fp32 peak {info['machine']:.0f} GFLOP/s ({info['machine_isa']}, {info['threads']} "
                             f"threads): our FMA-throughput loop, per-thread CPU time, cached in {info['cache']}")


def pct_of(peak, which: str):
    def cell(r):
        v = r.throughput("GFLOP", which)
        return "-" if v is None or not peak else f"{100 * v / peak:.0f}%"
    return cell
