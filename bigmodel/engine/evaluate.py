"""Evaluation: loss, accuracy, confusion matrix (per-class precision/recall/F1) or perplexity, on
one split, optionally sharded over data-parallel processes."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from ..data import load_data
from ..data.base import DataSpec, TensorSplit
from ..errors import CheckpointError, ConfigError
from ..models import build_model, layer_report
from . import distributed
from .checkpoint import load_checkpoint
from .metrics import EvalResult


@torch.no_grad()
def evaluate_split(model: torch.nn.Module, split: TensorSplit, spec: DataSpec, batch_size: int = 256,
                   ctx: distributed.DistContext | None = None, confusion: bool = False,
                   classes: list[str] | None = None) -> EvalResult:
    """Evaluate `model` on `split` in eval mode (restoring its mode after). With a distributed
    context, each rank takes every world_size-th example and the sums are reduced, so every rank
    gets the result for the whole split."""
    ctx = ctx or distributed.DistContext()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n_cls = spec.num_classes
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    cm = torch.zeros(n_cls * n_cls, dtype=torch.int64) if confusion and spec.task == "classify" else None
    idx = torch.arange(ctx.rank, len(split), ctx.world_size)
    try:
        for start in range(0, idx.numel(), batch_size):
            x, y = split[idx[start : start + batch_size]]
            x, y = x.to(device), y.to(device)
            logits = model(x)
            if spec.task == "lm":
                logits = logits.reshape(-1, logits.shape[-1])
                y = y.reshape(-1)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double().cpu()
            pred = logits.argmax(-1)
            correct += (pred == y).sum().cpu()
            count += y.numel()
            if cm is not None:
                cm += torch.bincount((y * n_cls + pred).cpu(), minlength=n_cls * n_cls)
    finally:
        model.train(was_training)
    sums = torch.stack([loss_sum, correct, count])
    if ctx.enabled:
        dev = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
        sums = distributed.all_reduce_sum(ctx, sums.to(dev)).cpu()
        if cm is not None:
            cm = distributed.all_reduce_sum(ctx, cm.to(dev)).cpu()
    total = int(sums[2])
    return EvalResult(
        task=spec.task,
        loss=float(sums[0] / total) if total else float("nan"),
        accuracy=float(sums[1] / total) if total else float("nan"),
        count=total,
        confusion=cm.view(n_cls, n_cls) if cm is not None else None,
        classes=classes,
    )


def evaluate_checkpoint(
    path: str | os.PathLike,
    split: str | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 256,
    backend: str = "bigmodel",
    device: str = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint (from either backend), rebuild its model and data, and evaluate one split
    (default: "test" if the dataset has one, else "val"). Returns a JSON-ready dict."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    ckpt = load_checkpoint(path)
    tc = ckpt["train_config"]
    d = ckpt["data"]
    name = data or d["name"]
    bundle = load_data(name, data_dir or (d.get("data_dir") if name == d["name"] else None), d.get("seq_len"),
                       d.get("vocab"), d.get("classes") if name.startswith("csv:") else None)
    if bundle.spec.to_dict() != d["spec"]:
        raise CheckpointError(f"{ckpt['path']}: the model expects data shaped {d['spec']}, "
                              f"but {name} gives {bundle.spec.to_dict()}")
    split_name = split or ("test" if "test" in bundle.splits else "val")
    part = bundle.split(split_name)
    torch.manual_seed(0)
    model = build_model(tc["model"], bundle.spec, tc["model_options"], backend)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt['path']}: weights do not fit the {tc['model']} model: "
                              f"{str(exc).splitlines()[0]}") from None
    model.to(device)
    classes = bundle.classes
    result = evaluate_split(model, part, bundle.spec, batch_size, confusion=True, classes=classes)
    out = {
        "checkpoint": ckpt["path"], "model": tc["model"], "trained_backend": ckpt.get("backend", tc.get("backend")),
        "backend": backend, "layers": layer_report(model, backend), "data": bundle.name, "split": split_name,
        "epoch": ckpt["epoch"], "step": ckpt["step"], **result.to_dict(),
    }
    return out
