"""`bigmodel bench model NAME`: a whole model's training and inference step, --backend bigmodel vs
--backend torch, with a per-layer-family breakdown from torch.profiler.

Kept beside bench.py (it registers itself on bench's Typer app when imported)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .app_common import console, err_console, import_bigmodel, set_threads, write_atomic
from .bench import CSV_OUT, JSON_OUT, MARKDOWN_OUT, THREADS, _run, app, exit_on_failures

MODEL_NAMES = ("cnn", "lstm", "transformer", "transformer-lm")


def model_json(results, breakdowns, env, meta) -> dict:
    from bigmodel.bench import results_to_json

    doc = results_to_json(results, env, meta)
    doc["breakdown"] = [bd.to_dict() for bd in breakdowns]
    return doc


@app.command("model")
def model_cmd(
    name: str = typer.Argument(..., help="cnn, lstm, transformer or transformer-lm."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (default: the model's training default)."),
    pass_: str = typer.Option("both", "--pass", help="train, infer or both."),
    data: Optional[str] = typer.Option(None, "--data", help="embedded (default for image models), synthetic-lm "
                                       "(default for transformer-lm), or any `bigmodel train --data` dataset."),
    model_opt: Optional[List[str]] = typer.Option(None, "--model-opt", help="KEY=VALUE model option (repeatable), "
                                                  "as for `bigmodel train`."),
    threads: Optional[int] = THREADS,
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed steps per side before timing."),
    repeats: int = typer.Option(20, "--repeats", min=1, help="Timed steps per side, alternating (median and IQR)."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", min=0.1,
                                                help="Stop timing a case after this long (at least 3 rounds)."),
    profile_steps: int = typer.Option(5, "--profile-steps", min=0, help="Steps per backend under torch.profiler "
                                      "for the per-op breakdown (0: no breakdown)."),
    json_out: Optional[str] = JSON_OUT,
    markdown_out: Optional[str] = MARKDOWN_OUT,
    csv_out: Optional[str] = CSV_OUT,
) -> None:
    """A model's train and inference step, --backend bigmodel vs torch: samples/s, ms/step, speedup, per-layer breakdown.

    The train step is forward, loss, backward and optimizer step; inference is eval mode under
    no_grad. Both backends start from the same weights and are validated against each other
    first. The breakdown gives each layer family's self CPU time per step on each side
    (torch.profiler)."""
    import_bigmodel()
    from bigmodel.bench import environment, results_to_csv, results_to_markdown
    from bigmodel.bench import model as model_bench
    from bigmodel.engine.config import parse_model_options
    from bigmodel.errors import BigmodelError

    if name not in MODEL_NAMES:
        raise typer.BadParameter(f"expected one of {', '.join(MODEL_NAMES)}, got {name!r}", param_hint="NAME")
    if batch_size is not None and batch_size < 1:
        raise typer.BadParameter(f"expected a positive integer, got {batch_size}", param_hint="--batch-size")
    if pass_ == "both":
        passes = model_bench.PASSES
    elif pass_ in model_bench.PASSES:
        passes = (pass_,)
    else:
        raise typer.BadParameter(f"expected one of train, infer or both, got {pass_!r}", param_hint="--pass")
    set_threads(threads)
    try:
        ms = model_bench.prepare(name, batch_size, data, parse_model_options(model_opt))
        cases = [model_bench.case(ms, p) for p in passes]
    except BigmodelError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    quiet = json_out == "-"
    results = _run(cases, warmup, repeats, quiet=quiet, max_seconds=max_seconds)
    breakdowns = []
    if profile_steps:
        for r in results:
            if r.status == "ok":  # never profile a case that failed validation
                breakdowns.append(model_bench.breakdown(ms, r.params["pass"], profile_steps))
    env = environment()
    meta = {"suite": "model", "model": name, "warmup": warmup, "repeats": repeats, "max_seconds": max_seconds,
            "profile_steps": profile_steps, "command": f"bigmodel bench model {name}"}
    doc = model_json(results, breakdowns, env, meta)
    if csv_out:
        write_atomic(Path(csv_out), results_to_csv(results, env))
    if markdown_out:
        text = results_to_markdown(results, env, meta["command"], ["samples"])
        text += "".join("\n" + model_bench.breakdown_markdown(bd) for bd in breakdowns)
        write_atomic(Path(markdown_out), text)
    if quiet:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        from bigmodel.bench import render_table

        console.print(render_table(results, f"{name}: --backend bigmodel vs --backend torch (ms per step)",
                                   ["samples"]))
        for line in model_bench.step_lines(results):
            console.print(line, highlight=False)
        for bd in breakdowns:
            console.print(model_bench.render_breakdown(bd))
            for fam, note in bd.to_dict()["notes"].items():
                console.print(f"[dim]{fam}: {note}[/]")
        console.print(f"[dim]{env['cpu']}, {env['threads']} threads, ISA {env['isa']}, torch {env['torch']}, "
                      f"{env['date']}[/]")
        if json_out:
            write_atomic(Path(json_out), json.dumps(doc, indent=2) + "\n")
            console.print(f"results written to {json_out}")
    from bigmodel.bench.report import failure_lines

    exit_on_failures(failure_lines(results))
