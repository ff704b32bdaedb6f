"""`bigmodel bench model NAME...`: whole models' training and inference step, --backend bigmodel
vs --backend torch, with a per-layer-family breakdown from torch.profiler; `--epoch` times the
steps of one whole training epoch (what `bench train` timed; that spelling is kept, hidden, for
one release)."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..app_common import console, err_console, import_bigmodel, set_threads
from . import common as C
from .tables import print_family


def model_cmd(
    names: List[str] = typer.Argument(..., metavar="NAME...", help="Models of bigmodel.models (see `bigmodel "
                                      "train --list-models`): cnn, lstm, transformer, transformer-lm, mlp."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (default: the model's training default)."),
    pass_: Optional[str] = typer.Option(None, "--pass", help="train, infer or both (default: the suite's)."),
    data: Optional[str] = typer.Option(None, "--data", help="embedded (default for image models), synthetic-lm "
                                       "(default for transformer-lm), or any `bigmodel train --data` dataset."),
    model_opt: Optional[List[str]] = typer.Option(None, "--model-opt", help="KEY=VALUE model option (repeatable), "
                                                  "as for `bigmodel train`."),
    epoch: bool = typer.Option(False, "--epoch", help="Cycle through every batch of one training epoch and report "
                               "the time per epoch (repeats default to the epoch's steps)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="With --epoch: only this many batches."),
    threads: Optional[int] = C.THREADS, warmup: Optional[int] = C.WARMUP, repeats: Optional[int] = C.REPEATS,
    max_seconds: Optional[float] = C.MAX_SECONDS,
    profile_steps: Optional[int] = typer.Option(None, "--profile-steps", min=0, help="Steps per backend under "
                                                "torch.profiler for the per-op breakdown (0: none; default: the "
                                                "suite's, none with --epoch)."),
    as_json: bool = C.JSON_FLAG, json_file=C.JSON_FILE,
    markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """Models' train and inference step, --backend bigmodel vs torch: samples/s, ms/step, speedup, per-layer breakdown.

    The train step is forward, loss, backward and optimizer step; inference is eval mode under
    no_grad. Both backends start from the same weights and are validated against each other
    first. The breakdown gives each layer family's self CPU time per step on each side
    (torch.profiler)."""
    run_models(names, batch_size, pass_, data, model_opt, epoch, steps, threads, warmup, repeats, max_seconds,
               profile_steps, C.Output(as_json, json_file, csv_out, markdown_out))


def run_models(names, batch_size, pass_, data, model_opt, epoch, steps, threads, warmup, repeats, max_seconds,
               profile_steps, out: C.Output, suite: str = "model") -> None:
    import_bigmodel()
    from bigmodel.bench import model as M
    from bigmodel.bench.profile import breakdown
    from bigmodel.engine.config import parse_model_options
    from bigmodel.errors import BigmodelError, ConfigError

    fam = C.suite_family("model")
    passes = C.choice("--pass", pass_, M.PASSES) or fam.settings["passes"]
    set_threads(threads)
    try:
        opts = parse_model_options(model_opt)
        pairs = list(M.cases(names, passes, batch_size, {n: opts for n in names}, data, epoch=epoch, steps=steps))
    except ConfigError as exc:
        if "unknown model" in str(exc):
            raise typer.BadParameter(str(exc), param_hint="NAME")
        C.fail(str(exc))
    except BigmodelError as exc:
        C.fail(str(exc))
    for _, c in pairs:
        c.suite = suite
    t = C.timing(fam, warmup, repeats, max_seconds)
    if epoch and repeats is None:
        t["repeats"], t["max_seconds"] = max(c.params["epoch_steps"] for _, c in pairs), None
    results = C.run([c for _, c in pairs], t, out.as_json)
    n_profile = profile_steps if profile_steps is not None else (0 if epoch else fam.options["profile_steps"])
    for (ms, _), r in zip(pairs, results):
        if r.status == "ok" and n_profile:  # never profile a case that failed validation
            r.extra["breakdown"] = breakdown(ms, r.params["pass"], n_profile).to_dict()

    def render(env):
        print_family(console, "model", results, f"{', '.join(names)}: --backend bigmodel vs --backend torch "
                     "(ms per step)", ["samples"])
        for r in results:
            if r.status != "ok":
                continue
            console.print(f"{r.name}: {r.throughput('samples', 'ours'):,.0f} samples/s with --backend bigmodel, "
                          f"{r.throughput('samples', 'torch'):,.0f} with --backend torch: speedup {r.speedup:.2f}x",
                          highlight=False)
            secs = M.epoch_seconds(r)
            if secs:
                console.print(f"{r.params['model']}: {secs['bigmodel']:.2f} s per epoch ({r.params['epoch_steps']} "
                              f"steps) with --backend bigmodel, {secs['torch']:.2f} s with --backend torch: "
                              f"bigmodel/torch = {secs['bigmodel'] / secs['torch']:.2f}x", highlight=False)
    C.emit(results, out, {"suite": suite, "models": list(names), **t, "profile_steps": n_profile, "epoch": epoch,
                          "command": f"bigmodel bench model {' '.join(names)}", "units": ["samples"]}, render)


def train_alias(
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Model(s) to time (repeatable)."),
    data: str = typer.Option("embedded", "--data", help="Dataset, as for `bigmodel train`."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size (default: the model's)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Cycle through this many batches."),
    threads: Optional[int] = C.THREADS, warmup: Optional[int] = C.WARMUP, repeats: Optional[int] = C.REPEATS,
    as_json: bool = C.JSON_FLAG, json_file=C.JSON_FILE,
    markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """Deprecated: `bigmodel bench model NAME... --epoch --pass train`."""
    err_console.print("[yellow]`bigmodel bench train` is deprecated and goes in the next release: use "
                      "`bigmodel bench model NAME... --epoch --pass train`[/]", highlight=False)
    run_models(model or ["cnn", "lstm", "transformer", "mlp"], batch_size, "train", data, None, True, steps, threads,
               warmup, repeats, None, 0, C.Output(as_json, json_file, csv_out, markdown_out), suite="train")
