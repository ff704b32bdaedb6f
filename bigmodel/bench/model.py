"""Whole-model cases (`bigmodel bench model NAME`): one training step (forward, loss, backward,
optimizer step) or one inference step (eval mode, no_grad) of a model from bigmodel.models,
built with --backend bigmodel and with --backend torch from the same seed (same weights), timed
in alternating rounds in one process at the same thread count.

The model's configuration is resolved as `bigmodel train` resolves it (engine.config.make_config:
the one check of model names, batch sizes and options). With `epoch=True` the timed steps cycle
through the batches of one whole training epoch, so median step time x steps estimates the time
per epoch (data loading, identical on both sides, left out); otherwise through N_BATCHES batches.

Each case validates before it is timed: inference compares the two backends' outputs; training
compares the first batch's loss and every parameter's gradient (with dropout off: see validate).
The per-layer-family breakdown under torch.profiler is in profile.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from ..data import DataSpec, limit_split, load_data
from ..engine.config import make_config
from ..engine.trainer import loss_and_correct, make_optimizer
from ..errors import ConfigError
from ..models import build_model, layer_report
from .harness import OURS, Case, Result, close, lazy

PASSES = ("train", "infer")
BACKENDS = (OURS, "torch")
SYNTHETIC_LM = "synthetic-lm"  # default data of transformer-lm: random tokens (the time does not depend on them)
SYNTHETIC_LM_VOCAB = 96
SYNTHETIC_LM_SEQ_LEN = 128
N_BATCHES = 8  # the timed steps cycle through this many batches (outside epoch mode)


@dataclass
class ModelSpec:
    """What a model case needs to build one model twice and feed it batches."""

    model: str
    batch_size: int
    data: str
    spec: DataSpec
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    options: dict[str, Any]
    optimizer: str
    train_config: Any = None
    epoch: bool = False


def _synthetic_lm(batch_size: int, seq_len: int, n: int, seed: int) -> tuple[DataSpec, list]:
    spec = DataSpec("tokens", "lm", (seq_len,), SYNTHETIC_LM_VOCAB, vocab_size=SYNTHETIC_LM_VOCAB)
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        seq = torch.randint(0, SYNTHETIC_LM_VOCAB, (batch_size, seq_len + 1), generator=g)
        batches.append((seq[:, :-1].contiguous(), seq[:, 1:].contiguous()))
    return spec, batches


def prepare(model: str, batch_size: int | None = None, data: str | None = None,
            options: dict[str, Any] | None = None, seed: int = 0, seq_len: int | None = None,
            epoch: bool = False, steps: int | None = None) -> ModelSpec:
    """Resolve the model's training configuration (as `bigmodel train` would) and make its
    batches: from the embedded digits (or `data`) for most models, random tokens for
    transformer-lm. `epoch`: every batch of one epoch (the last one may be short); `steps`
    keeps only that many."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"option 'steps' must be at least 1 when given, got {steps!r}")
    if data is None:
        data = SYNTHETIC_LM if model == "transformer-lm" else "embedded"
    synthetic = data == SYNTHETIC_LM
    cfg = make_config({"model": model, "data": "embedded" if synthetic else data, "batch_size": batch_size,
                       "seed": seed, "model_options": dict(options or {}), "seq_len": seq_len})
    if synthetic:
        spec, batches = _synthetic_lm(cfg.batch_size, seq_len or SYNTHETIC_LM_SEQ_LEN, steps or N_BATCHES, seed)
    else:
        bundle = load_data(cfg.data, cfg.data_dir, cfg.seq_len)
        split = limit_split(bundle.split("train"), None)
        if cfg.batch_size > len(split):
            raise ConfigError(f"batch size {cfg.batch_size} exceeds the {len(split)} training examples of {data}")
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
        bs = cfg.batch_size
        starts = range(0, len(split), bs) if epoch else range(0, min(N_BATCHES, len(split) // bs) * bs, bs)
        batches = [split[order[i:i + bs]] for i in starts][:steps]
        spec = bundle.spec
    return ModelSpec(model, cfg.batch_size, data, spec, batches, cfg.model_options, cfg.optimizer, cfg, epoch)


def _build(ms: ModelSpec, backend: str, seed: int, options: dict[str, Any] | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ms.model, ms.spec, ms.options if options is None else options, backend)


def make_steps(ms: ModelSpec, pass_: str, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """{'bigmodel': step, 'torch': step}: one call is one step on the next batch."""
    out = {}
    for backend in BACKENDS:
        net = _build(ms, backend, seed)
        opt = make_optimizer(ms.train_config, net.parameters()) if pass_ == "train" else None
        out[backend] = _step(net, opt, ms)
    return out


def _step(net, opt, ms: ModelSpec):
    position = [0]
    net.train(opt is not None)

    def step():
        x, y = ms.batches[position[0] % len(ms.batches)]
        position[0] += 1
        if opt is None:
            with torch.no_grad():
                return net(x)
        loss, _, _ = loss_and_correct(net(x), y, ms.spec.task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def validate(ms: ModelSpec, pass_: str, seed: int = 0) -> str | None:
    """None when both backends agree on the first batch, else what differs.

    Training is checked with dropout off (same weights: dropout has no parameters): the two
    backends draw dropout masks differently (bigmodel's attention draws its own inside the fused
    kernel), so with dropout on their losses differ by design, not by error. Gradients must agree
    within 1e-3 of each tensor's largest entry (float32 sums in a different order)."""
    options = ms.options
    if pass_ == "train" and options.get("dropout"):
        options = {**options, "dropout": 0.0}
    nets = {b: _build(ms, b, seed, options) for b in BACKENDS}
    for (name, p), q in zip(nets[OURS].state_dict().items(), nets["torch"].state_dict().values()):
        if not torch.equal(p, q):
            return f"initial weights differ between backends at {name}"
    x, y = ms.batches[0]
    if pass_ == "infer":
        outs = {}
        for b, net in nets.items():
            net.eval()
            with torch.no_grad():
                outs[b] = net(x)
        problem = close(outs[OURS], outs["torch"].double(), rtol=1e-3, atol=1e-4)
        return None if problem is None else f"inference output: {problem}"
    losses = {}
    for b, net in nets.items():
        net.train()
        torch.manual_seed(seed + 1)
        loss, _, _ = loss_and_correct(net(x), y, ms.spec.task)
        loss.backward()
        losses[b] = loss.detach()
    problem = close(losses[OURS], losses["torch"].double(), rtol=1e-4, atol=1e-5)
    if problem:
        return f"first-batch loss: {problem}"
    for (name, p), q in zip(nets[OURS].named_parameters(), nets["torch"].parameters()):
        if (p.grad is None) != (q.grad is None):
            return f"gradient of {name}: present on one backend only"
        if p.grad is not None:
            scale = float(q.grad.abs().max()) if q.grad.numel() else 0.0
            problem = close(p.grad, q.grad.double(), rtol=1e-3, atol=1e-3 * scale + 1e-8)
            if problem:
                return f"gradient of {name}: {problem}"
    return None


def case(ms: ModelSpec, pass_: str, seed: int = 0) -> Case:
    """'bigmodel' is the bigmodel backend's step, 'torch' torch's. Layers bigmodel.nn does not
    have yet run on torch.nn on both sides, and the name says which."""
    if pass_ not in PASSES:
        raise ConfigError(f"pass must be one of {', '.join(PASSES)}, got {pass_!r}")
    steps = lazy(lambda: make_steps(ms, pass_, seed))
    report = layer_report(_build(ms, OURS, seed), OURS)
    fallback = f" (torch.nn: {', '.join(report['fallback'])})" if report["fallback"] else ""
    epoch = f", epoch of {len(ms.batches)} steps" if ms.epoch else ""
    params = {"model": ms.model, "pass": pass_, "batch_size": ms.batch_size, "data": ms.data,
              "optimizer": ms.optimizer if pass_ == "train" else None, "model_options": ms.options, "layers": report}
    if ms.epoch:
        params["epoch_steps"] = len(ms.batches)
    return Case(
        suite="model",
        name=f"{ms.model} {pass_} batch {ms.batch_size}{epoch}{fallback}",
        params=params,
        impls={b: (lambda b=b: steps()[b]()) for b in BACKENDS},
        check=lambda: validate(ms, pass_, seed),
        work={"samples": float(ms.batch_size)},
    )


def cases(models: Sequence[str], passes: Sequence[str] = PASSES, batch_size: int | None = None,
          options: dict[str, dict[str, Any]] | None = None, data: str | None = None, seed: int = 0,
          epoch: bool = False, steps: int | None = None) -> Iterator[tuple[ModelSpec, Case]]:
    """(spec, case) per model and pass; the spec is what profile.breakdown needs."""
    for m in models:
        ms = prepare(m, batch_size, data, (options or {}).get(m), seed, epoch=epoch, steps=steps)
        for p in passes:
            yield ms, case(ms, p, seed)


def epoch_seconds(r: Result) -> dict[str, float] | None:
    """Estimated seconds per epoch of each backend (median step x steps), for epoch-mode results."""
    steps = r.params.get("epoch_steps")
    if r.status != "ok" or not steps:
        return None
    return {b: t.median_ms * steps / 1e3 for b, t in r.timings.items()}
