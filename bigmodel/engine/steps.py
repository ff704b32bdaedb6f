"""The parts of one optimizer step that the training loop and the model benchmarks share: the
loss (with accuracy counts), the optimizer and the learning-rate schedule a TrainConfig names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import TrainConfig


def loss_and_correct(logits: torch.Tensor, targets: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mean cross-entropy, number correct, number of predictions).

    task "lm": logits (N, T, V), targets (N, T), every position counts; else logits (N, C), targets (N,).
    """
    if task == "lm":
        flat = logits.reshape(-1, logits.shape[-1])
        t = targets.reshape(-1)
        loss = F.cross_entropy(flat, t)
        correct = (flat.detach().argmax(-1) == t).sum()
        return loss, correct, t.numel()
    loss = F.cross_entropy(logits, targets)
    return loss, (logits.detach().argmax(-1) == targets).sum(), targets.numel()


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, opt, steps_per_epoch: int):
    """Stepped once per optimizer step. cosine: to zero over the run; step: x gamma every step_epochs."""
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
    if cfg.scheduler == "step":
        every = cfg.step_epochs or max(1, math.ceil(cfg.epochs / 3))
        return torch.optim.lr_scheduler.StepLR(opt, step_size=every * steps_per_epoch, gamma=cfg.gamma)
    return None
