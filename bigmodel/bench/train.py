"""Training-step benchmark: the steps of one epoch of `bigmodel train MODEL` (forward, backward,
optimizer step on the embedded data, the model's default batch size and optimizer) with
--backend bigmodel against --backend torch, in one process.

One timed call is one training step on the next batch of the epoch; the two backends alternate
step by step (A B A B ...), so on a shared, noisy machine both see the same load, and the median
step time times the steps per epoch estimates the time per epoch (data loading, identical on both
sides, is left out).

Each case first checks that both backends start from the same weights and give the same loss and
gradients on the first batch (with dropout off); only then is it timed. Layers that bigmodel.nn does not have yet
run on torch.nn on both sides, and the case's label says which (those cost the same on both).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..data import limit_split, load_data
from ..engine.config import make_config
from ..engine.trainer import loss_and_correct, make_optimizer
from ..models import build_model, layer_report
from .harness import Case, close

DEFAULT_MODELS = ("cnn", "lstm", "transformer", "mlp")


def _batches(split, batch_size: int, steps: int | None, seed: int):
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split), generator=g)
    out = [split[order[i : i + batch_size]] for i in range(0, len(split), batch_size)]
    return out[:steps] if steps else out


def _without_dropout(net: torch.nn.Module) -> torch.nn.Module:
    """The check runs with dropout off: the two backends draw dropout masks differently
    (bigmodel's attention draws its own inside the fused kernel), so with dropout on their losses
    differ by design, not by error. Dropout has no parameters, so the weights are unchanged; the
    timed steps keep it."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0
        elif isinstance(getattr(m, "dropout", None), float):  # MultiheadAttention, LSTM
            m.dropout = 0.0
    return net


def _make_case(model: str, data: str, batch_size: int | None, steps: int | None, seed: int, limit: int | None) -> Case:
    cfg = make_config({"model": model, "data": data, "batch_size": batch_size, "seed": seed, "limit": limit})
    bundle = load_data(cfg.data, cfg.data_dir, cfg.seq_len)
    split = limit_split(bundle.split("train"), cfg.limit)
    batches = _batches(split, cfg.batch_size, steps, seed)
    spec = bundle.spec
    sides = {}
    for backend in ("bigmodel", "torch"):
        torch.manual_seed(seed)
        net = build_model(model, spec, cfg.model_options, backend)
        sides[backend] = (net, make_optimizer(cfg, net.parameters()))
    report = layer_report(sides["bigmodel"][0], "bigmodel")

    def step(backend: str):
        position = [0]

        def run():
            net, opt = sides[backend]
            net.train()
            x, y = batches[position[0] % len(batches)]
            position[0] += 1
            loss, _, _ = loss_and_correct(net(x), y, spec.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    def check() -> str | None:
        grads, losses = {}, {}
        x, y = batches[0]
        for backend in ("bigmodel", "torch"):
            torch.manual_seed(seed)
            net = _without_dropout(build_model(model, spec, cfg.model_options, backend))
            grads[backend] = net
            torch.manual_seed(seed + 1)
            loss, _, _ = loss_and_correct(net(x), y, spec.task)
            loss.backward()
            losses[backend] = loss.detach()
        ours, theirs = grads["bigmodel"], grads["torch"]
        for (name, p), q in zip(ours.state_dict().items(), theirs.state_dict().values()):
            if not torch.equal(p, q):
                return f"initial weights differ between backends at {name}"
        problem = close(losses["bigmodel"], losses["torch"].double(), rtol=1e-4, atol=1e-5)
        if problem:
            return f"first-batch loss: {problem}"
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            problem = close(p.grad, q.grad.double(), rtol=1e-3, atol=1e-5)
            if problem:
                return f"gradient of {name}: {problem}"
        return None

    fallback = f" (torch.nn: {', '.join(report['fallback'])})" if report["fallback"] else ""
    return Case(
        suite="train",
        name=f"{model} step, batch {cfg.batch_size}{fallback}",
        params={"model": model, "data": data, "batch_size": cfg.batch_size, "steps": len(batches),
                "optimizer": cfg.optimizer, "model_options": cfg.model_options, "layers": report},
        ours=step("bigmodel"),
        torch=step("torch"),
        check=check,
        work={"samples": float(cfg.batch_size)},
    )


def cases(models: Sequence[str] = DEFAULT_MODELS, data: str = "embedded", batch_size: int | None = None,
          steps: int | None = None, seed: int = 0, limit: int | None = None) -> Iterator[Case]:
    """One case per model, cycling through `steps` batches (None: all batches of one epoch)."""
    for m in models:
        yield _make_case(m, data, batch_size, steps, seed, limit)


def epoch_lines(results) -> list[str]:
    """'cnn: 2.31 s/epoch with bigmodel, 2.28 s with torch (1.01x)' per timed case."""
    out = []
    for r in results:
        if r.status != "ok":
            continue
        steps = r.params["steps"]
        ours, theirs = r.ours.median_ms * steps / 1e3, r.torch.median_ms * steps / 1e3
        out.append(f"{r.params['model']}: {ours:.2f} s per epoch ({steps} steps) with --backend bigmodel, "
                   f"{theirs:.2f} s with --backend torch: bigmodel/torch = {ours / theirs:.2f}x")
    return out
