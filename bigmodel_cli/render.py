"""Rendering of training progress: Rich progress bars on a terminal, plain log lines otherwise."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.table import Table


def fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if pct:
        return f"{100 * v:.2f}%"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


def rate(v: Any) -> str:
    return "-" if v is None else f"{v:,.0f}"


def layers_line(info: dict[str, Any]) -> str | None:
    layers = info["layers"]
    if info["backend"] != "bigmodel":
        return None
    if not layers["bigmodel"] and not layers["fallback"]:
        return f"bigmodel.nn layers: none in {info['model']} (its layers are torch.nn's by design)"
    ours = ", ".join(layers["bigmodel"]) or "none yet"
    line = f"bigmodel.nn layers: {ours}"
    if layers["fallback"]:
        line += (f"; falling back to torch.nn for {', '.join(layers['fallback'])} "
                 f"(not in bigmodel.nn yet)")
    return line


def start_lines(info: dict[str, Any]) -> list[str]:
    what = (f"resuming {info['resumed_from']} at epoch {info['start_epoch'] + 1}, step {info['start_step']}"
            if info.get("resumed_from") else f"run folder {info['run_dir']}")
    lines = [
        f"training {info['model']} ({info['parameters']:,} parameters, backend {info['backend']}, {info['device']}"
        f"{', ' + str(info['world_size']) + ' processes' if info['world_size'] > 1 else ''}) on {info['data']}: "
        f"{info['train_examples']:,} train / {info['val_examples']:,} validation examples",
        what,
    ]
    if info.get("init_from"):
        lines.append(f"initialised from {info['init_from']}")
    line = layers_line(info)
    if line:
        lines.append(line)
    return lines


def epoch_line(r: dict[str, Any], epochs: int) -> str:
    metric = f"val ppl {r['val_ppl']:.3f}" if "val_ppl" in r else f"val acc {fmt(r['val_acc'], True)}"
    part = "" if r.get("complete", True) else " (partial)"
    return (f"epoch {r['epoch']}/{epochs}{part}: train loss {fmt(r['train_loss'])}, val loss {fmt(r['val_loss'])}, "
            f"{metric}, {r['epoch_seconds']:.1f} s, {rate(r['samples_per_s'])} samples/s")


def epoch_table(records: list[dict[str, Any]], title: str = "epochs") -> Table:
    lm = any("val_ppl" in r for r in records)
    t = Table(title=title, title_justify="left")
    for col in ("epoch", "step", "train loss", "train acc", "val loss", "val ppl" if lm else "val acc", "lr",
                "time (s)", "samples/s"):
        t.add_column(col, justify="right")
    for r in records:
        t.add_row(f"{r['epoch']}{'' if r.get('complete', True) else '*'}", str(r["step"]), fmt(r["train_loss"]),
                  fmt(r["train_acc"], True), fmt(r["val_loss"]),
                  f"{r['val_ppl']:.3f}" if lm else fmt(r["val_acc"], True), f"{r['lr']:.2e}",
                  f"{r['epoch_seconds']:.1f}", rate(r["samples_per_s"]))
    return t


class ConsoleReporter:
    """Rich progress bar when `console` is a terminal; plain lines (about ten per epoch) otherwise."""

    def __init__(self, console: Console, live: bool | None = None):
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.progress = None
        self.task = None
        self.epochs = 0
        self._next_log = 0
        self._t0 = 0.0

    def on_start(self, info: dict[str, Any]) -> None:
        self.epochs = info["epochs"]
        for line in start_lines(info):
            self.console.print(line, highlight=False, markup=False)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self._t0 = time.perf_counter()
        self._next_log = done + max(1, steps // 10)
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            if self.progress is None:
                self.progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} samples/s"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=self.console, transient=True)
                self.progress.start()
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, completed=done,
                                               loss="-", rate="-")

    def on_step(self, epoch: int, step: int, steps: int, loss: float, samples_per_s: float) -> None:
        if self.live and self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", rate=f"{samples_per_s:,.0f}")
        elif step >= self._next_log or step == steps:
            self._next_log = step + max(1, steps // 10)
            self.console.print(f"epoch {epoch}/{self.epochs} step {step}/{steps}: loss {loss:.4f}, "
                               f"{samples_per_s:,.0f} samples/s", highlight=False)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.console.print(epoch_line(record, self.epochs), highlight=False)

    def on_message(self, text: str) -> None:
        self.console.print(text, style="yellow", highlight=False, markup=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
