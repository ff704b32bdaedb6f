"""`bigmodel train [MODEL]`: train a model from the zoo (default: cnn on the embedded MNIST digits)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from .app_common import console, err_console, import_bigmodel
from .jsonout import JSON_FILE, JSON_FLAG, emit_json

MODEL_HELP = "cnn, lstm, transformer, transformer-lm or mlp (default cnn, or the checkpoint's when resuming)."


def _list_models(value: bool) -> None:
    if not value:
        return
    import_bigmodel()
    from rich.table import Table

    from bigmodel.models import MODELS, model_config

    t = Table(title="models (hyper-parameters: --model-opt KEY=VALUE or model_options in --config)",
              title_justify="left")
    for col in ("model", "what", "data", "hyper-parameters (defaults)", "training defaults"):
        t.add_column(col)
    for name, e in MODELS.items():
        opts = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in model_config(name).items())
        train = ", ".join(f"{k}={v}" for k, v in e.train_defaults.items())
        t.add_row(name, e.summary, "/".join(e.kinds), opts, train)
    console.print(t)
    raise typer.Exit()


def _fail(exc: BaseException, code: int = 2, rank: int = 0, world: int = 1) -> None:
    prefix = f"[rank {rank}] " if world > 1 else ""
    err_console.print(f"[red]error:[/] {prefix}{exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def train(
    model: Optional[str] = typer.Argument(None, help=MODEL_HELP, show_default=False),
    data: Optional[str] = typer.Option(None, "--data", help="embedded (default), mnist, text:FILE or csv:FILE."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the MNIST IDX files (--data mnist)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (default: the model's)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size per process."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: the model's)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd, adam or adamw."),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum (default 0.9)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="none, step or cosine (per step)."),
    step_epochs: Optional[int] = typer.Option(None, "--step-epochs", help="--scheduler step: decay every N epochs."),
    gamma: Optional[float] = typer.Option(None, "--gamma", help="--scheduler step: decay factor (default 0.1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for weights, batch order and dropout (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default cpu)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="bigmodel (our kernels) or torch (default bigmodel)."),
    out: Optional[str] = typer.Option(None, "--out", help="Folder for run folders (default runs)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run folder name (default MODEL-DATE-TIME)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a run: a last.pt, its folder, or 'latest'."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Start a new run from a checkpoint's weights."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML or TOML file of options; flags override it."),
    model_opt: Optional[List[str]] = typer.Option(None, "--model-opt", "-o",
                                                  help="Model hyper-parameter KEY=VALUE (repeatable); see --list-models."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Text: window (LM) or padded length (csv)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only this many training examples."),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="DataLoader worker processes (default 0)."),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Data-parallel processes on this machine (torchrun)."),
    as_json: bool = JSON_FLAG,
    json_file: Optional[Path] = JSON_FILE,
    list_models: bool = typer.Option(False, "--list-models", callback=_list_models, is_eager=True,
                                     help="List the models and their hyper-parameters, then exit."),
) -> None:
    """Train a model. With no arguments: the cnn on 5,000 embedded MNIST digits, no network needed.

    Writes OUT/NAME/ with config.yaml, metrics.jsonl, last.pt, best.pt and curves.png.
    """
    import_bigmodel()
    from bigmodel.engine import distributed, parse_model_options, resolve
    from bigmodel.errors import BigmodelError, NonFiniteLossError

    overrides = dict(
        model=model, data=data, data_dir=data_dir, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        lr=lr, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay, scheduler=scheduler,
        step_epochs=step_epochs, gamma=gamma, seed=seed, device=device, backend=backend, out=out, name=name,
        resume=resume, init_from=init_from, seq_len=seq_len, limit=limit, compile=compile_,
        num_workers=num_workers, nproc=nproc,
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    try:
        overrides["model_options"] = parse_model_options(model_opt) or None
        cfg = resolve(overrides, config)
    except BigmodelError as exc:
        _fail(exc, 2, rank, world)

    if cfg.nproc > 1 and not distributed.launched_by_torchrun():
        _launch(cfg, as_json, json_file)
        return

    from bigmodel.engine import train as run_training

    from .render import ConsoleReporter, epoch_table

    log_console = err_console if as_json else console
    reporter = ConsoleReporter(log_console) if rank == 0 else None
    try:
        result = run_training(cfg, reporter)
    except NonFiniteLossError as exc:
        _fail(exc, 3, rank, world)
    except BigmodelError as exc:
        _fail(exc, 2, rank, world)
    except KeyboardInterrupt:
        err_console.print("[red]aborted[/] (no checkpoint written for the current epoch)")
        raise typer.Exit(130)
    finally:
        if reporter is not None:
            reporter.close()
    if rank != 0:
        return
    emit_json(result.summary(), as_json, json_file)
    if not as_json:
        if result.records:
            console.print(epoch_table(result.records, f"{cfg.model} on {cfg.data}, backend {cfg.backend}"))
        best = result.best
        if best is not None:
            what = (f"val loss {best['val_loss']:.4f}" if "val_ppl" in (result.records[-1] if result.records else {})
                    else f"val acc {100 * best['val_acc']:.2f}%")
            console.print(f"best: epoch {best['epoch']}, {what}; {result.status} after {result.seconds:.1f} s; "
                          f"run folder {result.run_dir}", highlight=False)
    if result.status == "interrupted":
        raise typer.Exit(130)


def _launch(cfg, as_json: bool, json_file: Optional[Path] = None) -> None:
    """Start cfg.nproc workers with torchrun's launcher, each running this command on the resolved config."""
    import yaml

    from bigmodel.engine import distributed
    from bigmodel.engine import new_run_dir as _new_run_dir

    if cfg.resume is None and cfg.name is None:
        cfg.name = _new_run_dir(cfg).name  # decided once, here, for all workers
    fd, path = tempfile.mkstemp(prefix="bigmodel-launch-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    args = ["train", cfg.model, "--config", path] + (["--json"] if as_json else [])
    args += ["--json-file", str(json_file)] if json_file is not None else []
    (err_console if as_json else console).print(
        f"launching {cfg.nproc} processes with torch.distributed.run (gloo on CPU, NCCL on GPU)", highlight=False)
    try:
        distributed.launch(cfg.nproc, args)
    except Exception as exc:  # ChildFailedError: the worker printed its own error above
        # The workers that failed by themselves exit > 0; the launcher's SIGTERM to the others shows
        # up as a negative code, and which of them it reports first is a race: prefer the former.
        codes = sorted(c for c in (getattr(f, "exitcode", 1) for f in getattr(exc, "failures", {}).values()) if c > 0)
        code = codes[0] if codes else 1
        if code not in (3, 130):
            err_console.print(f"[red]error:[/] a training process failed ({type(exc).__name__}, exit code {code}); "
                              "see its output above", highlight=False)
        raise typer.Exit(code)
    finally:
        os.unlink(path)
