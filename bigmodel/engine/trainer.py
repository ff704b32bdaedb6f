"""The training loop: data, model, optimizer and scheduler from a TrainConfig; checkpoints with
exact resume; Ctrl-C and NaN handling; data-parallel training; metrics and plots in a run folder.

The run folder (what it holds, how it is named) is rundir.py's; stopping on a signal is
interrupt.py's; the loss, optimizer and schedule are steps.py's.

Exactness: the batch order of epoch e is a function of (seed, e) alone (DistributedSampler with
set_epoch), the DataLoader draws its worker seeds from its own generator, and checkpoints carry
every RNG state and the position inside the epoch, so a run stopped anywhere and resumed replays
exactly what the uninterrupted run would have done (bit for bit on CPU, same thread count).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from .. import _io
from ..data import DataBundle, limit_split, load_data
from ..errors import CheckpointError, NonFiniteLossError
from ..models import build_model, layer_report
from . import distributed, rundir
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .config import TrainConfig
from .evaluate import evaluate_split
from .interrupt import StopRequest, ignore_sigint
from .steps import loss_and_correct, make_optimizer, make_scheduler

__all__ = ["Reporter", "TrainResult", "Trainer", "data_state", "loss_and_correct", "make_optimizer",
           "make_scheduler", "train"]


class Reporter:
    """Receives training events (rank 0 only). The command line renders them; the default is silent."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None: ...
    def on_step(self, epoch: int, step: int, steps: int, loss: float, samples_per_s: float) -> None: ...
    def on_epoch_end(self, record: dict[str, Any]) -> None: ...
    def on_message(self, text: str) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path | None
    records: list[dict[str, Any]]
    status: str  # "finished" | "max_steps" | "interrupted"
    epoch: int
    step: int
    best: dict[str, Any] | None
    layers: dict[str, list[str]]
    seconds: float
    model: torch.nn.Module = field(repr=False, default=None)

    def summary(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir) if self.run_dir else None, "status": self.status,
                "epochs_completed": self.epoch, "steps": self.step, "seconds": round(self.seconds, 3),
                "best": self.best, "last": self.records[-1] if self.records else None, "layers": self.layers,
                "epochs": self.records}


class _SkipBatches(torch.utils.data.Sampler):
    """A batch sampler without its first `skip` batches (to resume inside an epoch)."""

    def __init__(self, batches: torch.utils.data.BatchSampler, skip: int):
        self.batches, self.skip = batches, skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, b in enumerate(self.batches):
            if i >= self.skip:
                yield b

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model) if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def data_state(bundle: DataBundle, cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint needs to rebuild the data: spec, classes, vocabulary, sequence length."""
    return {"name": bundle.name, "spec": bundle.spec.to_dict(), "classes": bundle.classes, "vocab": bundle.vocab,
            "seq_len": bundle.spec.input_shape[0] if bundle.spec.kind == "tokens" else None,
            "data_dir": cfg.data_dir}


def _sources(cfg: TrainConfig) -> tuple[dict | None, dict | None]:
    """(the checkpoint to resume, the checkpoint to fine-tune from); --init-from sets the model options."""
    resume = load_checkpoint(cfg.resume) if cfg.resume else None
    init = load_checkpoint(cfg.init_from) if cfg.init_from else None
    if init is not None and init["train_config"]["model"] != cfg.model:
        raise CheckpointError(f"{init['path']}: holds a {init['train_config']['model']!r} model, "
                              f"not {cfg.model!r}; --init-from needs the same model")
    if init is not None:
        cfg.model_options = dict(init["train_config"]["model_options"])
    return resume, init


def _load_bundle(cfg: TrainConfig, source: dict | None) -> DataBundle:
    """The data; vocabulary and classes come from the checkpoint when there is one."""
    d = source["data"] if source else {}
    bundle = load_data(cfg.data, cfg.data_dir, cfg.seq_len or d.get("seq_len"), d.get("vocab"),
                       d.get("classes") if source and d.get("name", "").startswith("csv:") else None)
    if source and bundle.spec.to_dict() != d["spec"]:
        raise CheckpointError(f"{source['path']}: the model was trained on data shaped {d['spec']}, "
                              f"but {cfg.data} gives {bundle.spec.to_dict()}")
    return bundle


def _empty_partial() -> dict[str, Any]:
    # the running sums of the epoch in progress (checkpointed, so a resume inside it reports the whole epoch)
    return {"loss_sum": 0.0, "correct": 0, "count": 0, "seconds": 0.0}


def _restore(resume: dict, model, optimizer, scheduler) -> tuple[int, int, int, list, dict | None, dict]:
    """Load the training state of `resume`; (epoch, step, epoch_step, records, best, partial)."""
    try:
        model.load_state_dict(resume["model_state"])
        optimizer.load_state_dict(resume["optimizer_state"])
        if scheduler is not None and resume.get("scheduler_state") is not None:
            scheduler.load_state_dict(resume["scheduler_state"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{resume['path']}: cannot restore the training state: "
                              f"{str(exc).splitlines()[0]}") from None
    set_rng_state(resume["rng"])
    return (resume["epoch"], resume["step"], resume.get("epoch_step", 0), list(resume.get("records", [])),
            resume.get("best"), dict(resume.get("partial") or _empty_partial()))


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


class Trainer:
    def __init__(self, cfg: TrainConfig, reporter: Reporter | None = None, handle_signals: bool = True):
        self.cfg = cfg
        self.reporter = reporter or Reporter()
        self.handle_signals = handle_signals
        self._stop = StopRequest()

    def request_stop(self) -> None:
        """Stop at the next step boundary, saving a checkpoint (what Ctrl-C does)."""
        self._stop.set()

    def run(self) -> TrainResult:
        ctx = distributed.setup(self.cfg.device)
        finished = False
        try:
            with self._stop.on_signals(self.reporter.on_message, self.handle_signals):
                result = self._run(ctx)
            finished = True
            return result
        finally:
            # after a clean finish every rank leaves together: a rank that tears its gloo pairs
            # down while rank 0 is still writing checkpoints can abort at exit
            distributed.cleanup(ctx, barrier=finished)

    def _run(self, ctx: distributed.DistContext) -> TrainResult:
        cfg = self.cfg
        t_start = time.perf_counter()
        main = ctx.is_main
        resume, init = _sources(cfg)
        bundle = _load_bundle(cfg, resume or init)
        train_split = limit_split(bundle.split("train"), cfg.limit)
        val_split = bundle.split("val")
        spec = bundle.spec

        # model (same seed -> same weights on either backend)
        seed_everything(cfg.seed)
        model = build_model(cfg.model, spec, cfg.model_options, cfg.backend)
        layers = layer_report(model, cfg.backend)
        if init is not None:
            try:
                model.load_state_dict(init["model_state"])
            except RuntimeError as exc:
                raise CheckpointError(f"{init['path']}: weights do not fit the model: {str(exc).splitlines()[0]}") from None
        model.to(ctx.device)
        optimizer = make_optimizer(cfg, model.parameters())

        world = ctx.world_size
        sampler = torch.utils.data.DistributedSampler(train_split, num_replicas=world, rank=ctx.rank,
                                                      shuffle=True, seed=cfg.seed, drop_last=False)
        batches = torch.utils.data.BatchSampler(sampler, cfg.batch_size, drop_last=False)
        steps_per_epoch = len(batches)
        scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)

        epoch, step, epoch_step = 0, 0, 0
        records: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        partial = _empty_partial()
        if resume is not None:
            epoch, step, epoch_step, records, best, partial = _restore(resume, model, optimizer, scheduler)

        # run folder: rank 0 decides, everyone agrees
        run_dir = Path(resume["path"]).parent if resume is not None else None
        if main and run_dir is None:
            run_dir = rundir.new_run_dir(cfg)
        run_dir = Path(distributed.broadcast_object(ctx, str(run_dir)))
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            _io.write_text(run_dir / "config.yaml", rundir.config_yaml(cfg, layers, rundir.environment()))

        net: torch.nn.Module = model
        if ctx.enabled:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                broadcast_buffers=False)  # our buffers are constants (positional encodings)
        if cfg.compile:
            net = torch.compile(net)

        if main:
            self.reporter.on_start({
                "run_dir": str(run_dir), "model": cfg.model, "backend": cfg.backend, "layers": layers,
                "data": bundle.name, "source": bundle.source, "train_examples": len(train_split),
                "val_examples": len(val_split), "parameters": sum(p.numel() for p in model.parameters()),
                "world_size": world, "device": str(ctx.device), "epochs": cfg.epochs,
                "steps_per_epoch": steps_per_epoch, "resumed_from": cfg.resume, "init_from": cfg.init_from,
                "start_epoch": epoch, "start_step": step,
            })

        def state(status_epoch: int, status_epoch_step: int) -> dict[str, Any]:
            return {
                "train_config": cfg.to_dict(), "data": data_state(bundle, cfg), "backend": cfg.backend,
                "model_state": _unwrap(net).state_dict(), "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng_state(), "epoch": status_epoch, "step": step, "epoch_step": status_epoch_step,
                "partial": dict(partial), "records": records, "best": best, "layers": layers,
            }

        def finish(status: str) -> TrainResult:
            if main:
                rundir.write_metrics(run_dir, records)
                rundir.plot(run_dir, records, spec.task, self.reporter.on_message,
                            f"{cfg.model} on {bundle.name}, backend {cfg.backend}")
            return TrainResult(run_dir, records, status, epoch, step, best, layers,
                               time.perf_counter() - t_start, _unwrap(net))

        status = "finished"
        task = spec.task
        # an LM's examples are token positions: samples/s counts sequences
        per_example = spec.input_shape[0] if task == "lm" else 1
        comm_device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
        while epoch < cfg.epochs:
            if cfg.max_steps is not None and step >= cfg.max_steps:
                status = "max_steps"
                break
            sampler.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                train_split, batch_size=None, sampler=_SkipBatches(batches, epoch_step),
                num_workers=cfg.num_workers, pin_memory=ctx.device.type == "cuda",
                generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch),
                worker_init_fn=ignore_sigint if cfg.num_workers else None)
            if main:
                self.reporter.on_epoch_start(epoch + 1, cfg.epochs, steps_per_epoch, epoch_step)
            net.train()
            t_epoch = time.perf_counter()
            seen_here = 0
            stop = False
            for x, y in loader:
                x = x.to(ctx.device, non_blocking=True)
                y = y.to(ctx.device, non_blocking=True)
                logits = net(x)
                loss, correct, count = loss_and_correct(logits, y, task)
                lv = loss.item()
                # [sum of losses, stop requested, non-finite, correct, predictions], summed over ranks
                flags = torch.tensor([lv * count, float(self._stop.requested), 0.0 if math.isfinite(lv) else 1.0,
                                      float(correct), float(count)], dtype=torch.float64, device=comm_device)
                f = distributed.all_reduce_sum(ctx, flags).tolist()
                if f[2] > 0:
                    last = run_dir / "last.pt"
                    keep = (f"the last good checkpoint is kept: {last} (epoch {records[-1]['epoch']})"
                            if records and last.exists() else "no checkpoint had been written yet")
                    raise NonFiniteLossError(
                        f"training loss became {lv if not math.isfinite(lv) else 'non-finite on another process'} "
                        f"at epoch {epoch + 1}, step {epoch_step + 1} of {steps_per_epoch} (global step {step + 1}); "
                        f"the run stopped; {keep}. Try a lower --lr (now {cfg.lr:g}).")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                epoch_step += 1
                seen_here += f[4]
                partial["loss_sum"] += f[0]
                partial["correct"] += int(f[3])
                partial["count"] += int(f[4])
                if main:
                    elapsed = time.perf_counter() - t_epoch
                    self.reporter.on_step(epoch + 1, epoch_step, steps_per_epoch, f[0] / f[4],
                                          seen_here / per_example / elapsed if elapsed > 0 else 0.0)
                if f[1] > 0:
                    stop = True
                    break
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    break
            partial["seconds"] += time.perf_counter() - t_epoch
            if stop:
                status = "interrupted"
                if main:
                    save_checkpoint(run_dir / "last.pt", state(epoch, epoch_step))
                    self.reporter.on_message(f"checkpoint saved to {run_dir / 'last.pt'} (epoch {epoch + 1}, "
                                             f"step {epoch_step} of {steps_per_epoch}); continue with "
                                             f"--resume {run_dir / 'last.pt'}")
                return finish(status)

            # end of epoch (or of max_steps inside it): validate, record, checkpoint
            complete = epoch_step >= steps_per_epoch
            t_val = time.perf_counter()
            val = evaluate_split(_unwrap(net), val_split, spec, max(256, cfg.batch_size), ctx)
            t_val = time.perf_counter() - t_val
            record = {
                "epoch": epoch + 1, "step": step, "complete": complete,
                "train_loss": _ratio(partial["loss_sum"], partial["count"]),
                "train_acc": _ratio(partial["correct"], partial["count"]),
                "val_loss": val.loss, "val_acc": val.accuracy,
                **({"val_ppl": val.perplexity} if task == "lm" else {}),
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_seconds": round(partial["seconds"], 4), "val_seconds": round(t_val, 4),
                "samples_per_s": round(partial["count"] / per_example / partial["seconds"], 2)
                if partial["seconds"] > 0 else None,
            }
            if complete:
                epoch, epoch_step = epoch + 1, 0
                partial = _empty_partial()
            records.append(record)
            improved = best is None or (val.loss < best["val_loss"] if task == "lm" else
                                        (val.accuracy, -val.loss) > (best["val_acc"], -best["val_loss"]))
            if improved:
                best = {k: record[k] for k in ("epoch", "step", "val_loss", "val_acc")}
            if main:
                st = state(epoch, epoch_step)
                save_checkpoint(run_dir / "last.pt", st)
                if improved:
                    save_checkpoint(run_dir / "best.pt", st)
                rundir.write_metrics(run_dir, records)
                self.reporter.on_epoch_end(record)
            if not complete:
                status = "max_steps"
                break
            if self._stop.requested:  # interrupted during validation: the checkpoint is already written
                status = "interrupted"
                if main:
                    self.reporter.on_message(f"checkpoint saved to {run_dir / 'last.pt'}; continue with "
                                             f"--resume {run_dir / 'last.pt'}")
                break
        return finish(status)


def train(cfg: TrainConfig, reporter: Reporter | None = None, handle_signals: bool = True) -> TrainResult:
    """Train as `cfg` says (joining a torch.distributed group if the environment describes one)."""
    return Trainer(cfg, reporter, handle_signals).run()
