"""`bigmodel bench all`: the standard suite of benchmarks/suite.toml, one table per family, one
JSON document, and optionally the scaling plot and the generated blocks of RESULTS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..app_common import console, import_bigmodel, set_threads, write_atomic
from . import common as C
from .tables import print_family

UNITS = {"pool": ["GB"], "model": ["samples"]}  # every other family reports GFLOP/s
TITLES = {"pool": "pooling: bigmodel vs torch.nn.functional", "gemm": "GEMM: bigmodel vs torch.mm",
          "conv": "conv2d: bigmodel vs torch.nn.functional.conv2d",
          "lstm": "LSTM: bigmodel.nn.LSTM vs torch (torch column: the baseline named in the case)",
          "attention": "attention: bigmodel vs torch SDPA (flash) vs naive",
          "model": "models: --backend bigmodel vs --backend torch (ms per step)",
          "sweep:attention": "sweep: attention vs sequence length", "sweep:conv": "sweep: conv2d vs batch",
          "sweep:gemm": "sweep: square GEMM vs size"}


def run_all(
    suite: Optional[Path] = typer.Option(None, "--suite", help="Suite file (default: benchmarks/suite.toml)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated families to run: pool, gemm, conv, "
                                       "lstm, attention, model (their sweeps included)."),
    quick: bool = typer.Option(False, "--quick", help="Few repeats and a short time limit per case (smoke runs; "
                               "the suite file's [quick] settings)."),
    threads: Optional[int] = C.THREADS,
    as_json: bool = C.JSON_FLAG, json_file=C.JSON_FILE,
    markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the scaling curves (the suite's sweeps) into this PNG."),
    results: Optional[Path] = typer.Option(None, "--results", help="Rewrite the generated blocks of this Markdown "
                                           "file (e.g. benchmarks/RESULTS.md), keeping everything else."),
) -> None:
    """Run the standard suite: every op family at its reference shapes, every model, and the sweeps
    for the scaling plots. One table per family; one JSON with every result and the environment."""
    import_bigmodel()
    from bigmodel.bench import environment, results_to_csv
    from bigmodel.bench import suite as S
    from bigmodel.bench.plot import PlotError, check_writable
    from bigmodel.bench.report import failure_lines
    from bigmodel.bench.results_md import ResultsFileError, environment_block, family_block, update_blocks

    families = [f.strip() for f in only.split(",") if f.strip()] if only is not None else None
    if families is not None and not families:
        raise typer.BadParameter("expected a comma-separated list of families", param_hint="--only")
    bad = [f for f in families or () if f not in S.FAMILIES]
    if bad:
        raise typer.BadParameter(f"unknown family {bad[0]!r}; expected some of {', '.join(S.FAMILIES)}",
                                 param_hint="--only")
    try:
        spec = S.load_suite(suite, quick, families)
        for path, option in ((plot, "--plot"), (results, "--results")):
            if path is not None:
                check_writable(path, option)
    except (S.SuiteError, PlotError) as exc:
        C.fail(str(exc))
    set_threads(threads)
    bar, task = C.progress(as_json, len(spec.families), "suite")
    runs = []
    with bar:
        for fam in spec.families:
            bar.update(task, description=fam.name)
            runs.append(S.run_family(fam, on_result=lambda r, n=fam.name: bar.update(task, description=f"{n}: {r.name}")))
            bar.update(task, advance=1)

    env = environment()
    command = C.command_line("bigmodel bench all")
    doc = S.suite_json(runs, env, {"suite": "all", "suite_file": str(spec.path), "quick": quick, "only": families,
                                   "command": command})
    all_results = [r for run in runs for r in run.results]
    C.emit_json(doc, as_json, json_file)
    if not as_json:
        for run in runs:
            print_family(console, run.name, run.results, TITLES.get(run.name, run.name), UNITS.get(run.name, ["GFLOP"]))
        console.print(f"[dim]{C.where(env, {})}{' (--quick: smoke-run settings, not figures to publish)' if quick else ''}[/]")
        if json_file:
            console.print(f"results written to {json_file}")
    if csv_out:
        write_atomic(Path(csv_out), results_to_csv(all_results, env))
    blocks = {"environment": environment_block(env, command)}
    for run in runs:
        blocks[run.name.replace(":", "-")] = family_block(run.results, UNITS.get(run.name, ["GFLOP"]))
    if markdown_out:
        write_atomic(Path(markdown_out), "".join(f"### {name}\n\n{body}\n" for name, body in blocks.items()))
    if results is not None:
        try:
            old = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
            write_atomic(results, update_blocks(old, blocks))
        except (OSError, ResultsFileError) as exc:
            C.fail(f"--results: {results}: {exc}")
        if not as_json:
            console.print(f"generated blocks of {results} rewritten")
    if plot is not None:
        from bigmodel.bench.plot import draw

        try:
            draw(doc, plot)
        except (OSError, PlotError) as exc:
            C.fail(f"--plot: {exc}")
        if not as_json:
            console.print(f"scaling curves drawn in {plot}")
    C.exit_on_failures(failure_lines(all_results))
