"""`bigmodel bench all` (the standard suite of benchmarks/suite.toml) and `bigmodel bench plot`.

Kept beside bench.py (it registers itself on bench's Typer app when imported)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .app_common import console, err_console, import_bigmodel, set_threads, write_atomic
from .bench import CSV_OUT, JSON_OUT, MARKDOWN_OUT, THREADS, app, exit_on_failures

UNITS = {"pool": ["GB"], "gemm": ["GFLOP"], "conv": ["GFLOP"], "lstm": ["GFLOP"], "attention": ["GFLOP"],
         "model": ["samples"], "sweep:attention": ["GFLOP"], "sweep:conv": ["GFLOP"], "sweep:gemm": ["GFLOP"]}
TITLES = {"pool": "pooling: bigmodel vs torch.nn.functional", "gemm": "GEMM: bigmodel vs torch.mm",
          "conv": "conv2d: bigmodel vs torch.nn.functional.conv2d",
          "lstm": "LSTM: bigmodel.nn.LSTM vs torch (torch column: the baseline named in the case)",
          "attention": "attention: bigmodel vs torch SDPA (flash) vs naive",
          "model": "models: --backend bigmodel vs --backend torch (ms per step)",
          "sweep:attention": "sweep: attention vs sequence length", "sweep:conv": "sweep: conv2d vs batch",
          "sweep:gemm": "sweep: square GEMM vs size"}
RESULTS_COMMAND = "bigmodel bench all --results benchmarks/RESULTS.md --json benchmarks/results.json --plot benchmarks/scaling.png"


def _fail(option: str, message: str) -> None:
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command("all")
def run_all(
    suite: Optional[Path] = typer.Option(None, "--suite", help="Suite file (default: benchmarks/suite.toml)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated families to run: pool, gemm, conv, "
                                       "lstm, attention, model (their sweeps included)."),
    quick: bool = typer.Option(False, "--quick", help="Few repeats and a short time limit per case (smoke runs; "
                               "the suite file's [quick] settings)."),
    threads: Optional[int] = THREADS,
    json_out: Optional[str] = JSON_OUT,
    markdown_out: Optional[str] = MARKDOWN_OUT,
    csv_out: Optional[str] = CSV_OUT,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the scaling curves (the suite's sweeps) into this PNG."),
    results: Optional[Path] = typer.Option(None, "--results", help="Rewrite the generated blocks of this Markdown "
                                           "file (e.g. benchmarks/RESULTS.md), keeping everything else."),
) -> None:
    """Run the standard suite: every op family at its reference shapes, every model, and the sweeps
    for the scaling plots. One table per family; one JSON with every result and the environment."""
    import_bigmodel()
    from bigmodel.bench import environment, results_to_csv
    from bigmodel.bench import suite as suite_mod
    from bigmodel.bench.plot import PlotError, check_writable
    from bigmodel.bench.results_md import ResultsFileError, environment_block, family_block, update_blocks

    families = [f.strip() for f in only.split(",") if f.strip()] if only is not None else None
    if families is not None and not families:
        raise typer.BadParameter("expected a comma-separated list of families", param_hint="--only")
    if families is not None:
        bad = [f for f in families if f not in suite_mod.FAMILIES]
        if bad:
            raise typer.BadParameter(f"unknown family {bad[0]!r}; expected some of {', '.join(suite_mod.FAMILIES)}",
                                     param_hint="--only")
    try:
        spec = suite_mod.load_suite(suite, quick, families)
    except suite_mod.SuiteError as exc:
        _fail("--suite", str(exc))
    if plot is not None:
        try:
            check_writable(plot, "--plot")
        except PlotError as exc:
            _fail("--plot", str(exc))
    if results is not None:
        try:
            check_writable(results, "--results")
        except PlotError as exc:
            _fail("--results", str(exc))
    set_threads(threads)
    quiet = json_out == "-"

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    runs = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task("suite", total=len(spec.families))
        for fam in spec.families:
            progress.update(task, description=fam.name)
            runs.append(suite_mod.run_family(fam, on_result=lambda r, n=fam.name: progress.update(
                task, description=f"{n}: {r.name}")))
            progress.update(task, advance=1)

    env = environment()
    command = "bigmodel " + " ".join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in (
        "bigmodel", "__main__.py") else "bigmodel bench all"
    meta = {"suite": "all", "suite_file": str(spec.path), "quick": quick, "only": families, "command": command}
    doc = suite_mod.suite_json(runs, env, meta)
    if quiet:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        from bigmodel.bench import attention as attn_bench
        from bigmodel.bench import model as model_bench
        from bigmodel.bench import render_table

        for run in runs:
            if run.kind == "attention":
                console.print(attn_bench.render_table(run.results, TITLES.get(run.name, run.name)))
            else:
                console.print(render_table(run.results, TITLES.get(run.name, run.name), UNITS.get(run.name, [])))
            for bd in run.breakdowns:
                console.print(model_bench.render_breakdown(bd))
        console.print(f"[dim]{env['cpu']}, {env['threads']} threads, ISA {env['isa']}, torch {env['torch']}, "
                      f"{env['date']}{' (--quick: smoke-run settings, not figures to publish)' if quick else ''}[/]")
    if json_out and json_out != "-":
        write_atomic(Path(json_out), json.dumps(doc, indent=2) + "\n")
        if not quiet:
            console.print(f"results written to {json_out}")
    all_results = [r for run in runs for r in suite_mod.case_results(run)]
    if csv_out:
        write_atomic(Path(csv_out), results_to_csv(all_results, env))
    blocks = {"environment": environment_block(env, command)}
    for run in runs:
        blocks[run.name.replace(":", "-")] = family_block(run.name, suite_mod.case_results(run),
                                                          UNITS.get(run.name, []), run.breakdowns)
    if markdown_out:
        text = "".join(f"### {name}\n\n{body}\n" for name, body in blocks.items())
        write_atomic(Path(markdown_out), text)
    if results is not None:
        try:
            old = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
            write_atomic(results, update_blocks(old, blocks))
        except (OSError, ResultsFileError) as exc:
            _fail("--results", f"--results: {results}: {exc}")
        if not quiet:
            console.print(f"generated blocks of {results} rewritten")
    if plot is not None:
        from bigmodel.bench.plot import draw

        try:
            draw(doc, plot)
        except (OSError, PlotError) as exc:
            _fail("--plot", f"--plot: {exc}")
        if not quiet:
            console.print(f"scaling curves drawn in {plot}")
    exit_on_failures(suite_mod.failures(runs))


@app.command("plot")
def plot_cmd(
    results_json: Path = typer.Argument(..., help="A suite run's JSON (bigmodel bench all --json FILE)."),
    out: Path = typer.Option(..., "--out", "-o", help="The PNG to write."),
) -> None:
    """Redraw the scaling curves (attention time and memory vs L, conv time vs batch, GEMM GFLOP/s
    vs size) from a saved suite JSON, without running anything."""
    from bigmodel.bench.compare import BenchFileError, load_results
    from bigmodel.bench.plot import PlotError, draw

    try:
        doc = load_results(results_json)
    except BenchFileError as exc:
        _fail("RESULTS_JSON", str(exc))
    if not any(str(r.get("suite", "")).startswith("sweep:") for r in doc["results"]):
        _fail("RESULTS_JSON", f"{results_json}: no sweep results to plot (run `bigmodel bench all` with a suite "
                              "that has [sweeps.*] tables)")
    try:
        draw(doc, out)
    except (OSError, PlotError) as exc:
        _fail("--out", f"--out: {exc}")
    console.print(f"scaling curves drawn in {out}")
