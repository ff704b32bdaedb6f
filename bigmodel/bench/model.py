"""Whole-model benchmark (`bigmodel bench model NAME`): one training step (forward, loss, backward,
optimizer step) and one inference step (eval mode, no_grad) of a model from bigmodel.models,
built with --backend bigmodel and with --backend torch from the same seed (same weights), timed
in alternating rounds in one process at the same thread count.

Each case validates before it is timed: inference compares the two backends' outputs; training
compares the first batch's loss and every parameter's gradient (with dropout off: see validate). A case that disagrees is reported as failed and never timed.

The per-op breakdown runs a few steps of each backend under torch.profiler (CPU) and groups the
self CPU time of every profiled op by layer family: an op counts for the family of the nearest
op on its call stack (itself included) that OP_FAMILIES names, so the aten::empty inside
bigmodel::conv2d counts as conv2d, and the aten::addmm calls of a decomposed torch LSTM count
as lstm. Everything else (linear layers, norms, the loss, the optimizer, autograd bookkeeping)
is "other", which both backends share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from ..data import DataSpec, limit_split, load_data
from ..engine.config import make_config
from ..engine.trainer import loss_and_correct, make_optimizer
from ..errors import ConfigError
from ..models import build_model, layer_report
from .harness import Case, CaseResult, close

MODELS = ("cnn", "lstm", "transformer", "transformer-lm")
PASSES = ("train", "infer")
SYNTHETIC_LM = "synthetic-lm"  # default data of transformer-lm: random tokens (the time does not depend on them)
SYNTHETIC_LM_VOCAB = 96
SYNTHETIC_LM_SEQ_LEN = 128
N_BATCHES = 8  # the timed steps cycle through this many batches

# Layer family -> profiler op names (regular expressions, matched in full) on each side, forward
# and backward, autograd nodes included. Keep every mapping here: the table, the JSON and the
# tests read it from this one place.
OP_FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "conv2d": {
        "bigmodel": (r"bigmodel::conv2d\w*",),
        "torch": (r"aten::conv2d", r"aten::_?convolution(_backward)?", r"aten::_convolution_mode",
                  r"aten::mkldnn_convolution(_backward)?\w*", r"aten::_slow_conv2d\w*", r"aten::thnn_conv2d\w*",
                  r"aten::_conv_depthwise2d\w*", r"aten::_nnpack\w*", r"ConvolutionBackward\d*"),
    },
    "max_pool2d": {
        "bigmodel": (r"bigmodel::max_pool2d\w*",),
        "torch": (r"aten::max_pool2d\w*", r"aten::mkldnn_max_pool2d\w*", r"MaxPool2DWithIndicesBackward\d*"),
    },
    "avg_pool2d": {
        "bigmodel": (r"bigmodel::avg_pool2d\w*",),
        "torch": (r"aten::avg_pool2d\w*", r"aten::mkldnn_avg_pool2d\w*", r"AvgPool2DBackward\d*"),
    },
    "lstm": {
        "bigmodel": (r"bigmodel::lstm\w*",),
        "torch": (r"aten::lstm", r"aten::lstm_cell", r"aten::mkldnn_rnn_layer\w*", r"aten::_thnn_fused_lstm_cell\w*",
                  r"MkldnnRnnLayerBackward\d*", r"ThnnFusedLstmCellBackward\d*"),
    },
    "attention": {
        "bigmodel": (r"bigmodel::scaled_dot_product_attention\w*", r"bigmodel::attention_dropout_mask"),
        # In eval mode torch's TransformerEncoderLayer runs whole layers as one fused op
        # (_transformer_encoder_layer_fwd): its time includes that layer's projections, norms and
        # MLP, which are "other" on the bigmodel side. The JSON and the table say so (NOTES).
        "torch": (r"aten::scaled_dot_product_attention", r"aten::_scaled_dot_product\w*",
                  r"ScaledDotProduct\w*Backward\d*", r"aten::_native_multi_head_attention",
                  r"aten::_transformer_encoder_layer_fwd"),
    },
    "gemm": {
        "bigmodel": (r"bigmodel::gemm\w*", r"bigmodel::_gemm_epilogue"),
        "torch": (),  # bigmodel's GEMM ops are not used in place of torch ops by the models' layers
    },
}
OTHER = "other"
NOTES = {
    "attention": "in eval mode torch fuses whole encoder layers (aten::_transformer_encoder_layer_fwd): its "
                 "attention time then includes the layers' projections, norms and MLP, which are 'other' for bigmodel",
}

_COMPILED = {side: [(fam, re.compile(p)) for fam, sides in OP_FAMILIES.items() for p in sides[side]]
             for side in ("bigmodel", "torch")}


def family_of(name: str, side: str) -> str | None:
    """The family whose `side` patterns match the profiler op name `name`, else None."""
    for fam, pat in _COMPILED[side]:
        if pat.fullmatch(name):
            return fam
    return None


# ---- data ------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """What `bench model` needs to build one model twice and feed it batches."""

    model: str
    batch_size: int
    data: str
    spec: DataSpec
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    options: dict[str, Any]
    optimizer: str
    train_config: Any = None


def _synthetic_lm(batch_size: int, seq_len: int, seed: int) -> tuple[DataSpec, list]:
    spec = DataSpec("tokens", "lm", (seq_len,), SYNTHETIC_LM_VOCAB, vocab_size=SYNTHETIC_LM_VOCAB)
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(N_BATCHES):
        seq = torch.randint(0, SYNTHETIC_LM_VOCAB, (batch_size, seq_len + 1), generator=g)
        batches.append((seq[:, :-1].contiguous(), seq[:, 1:].contiguous()))
    return spec, batches


def prepare(model: str, batch_size: int | None = None, data: str | None = None,
            options: dict[str, Any] | None = None, seed: int = 0, seq_len: int | None = None) -> ModelSpec:
    """Resolve the model's training configuration (as `bigmodel train` would) and make N_BATCHES
    batches: from the embedded digits for image models, random tokens for transformer-lm."""
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    if data is None:
        data = SYNTHETIC_LM if model == "transformer-lm" else "embedded"
    synthetic = data == SYNTHETIC_LM
    cfg = make_config({"model": model, "data": "embedded" if synthetic else data, "batch_size": batch_size,
                       "seed": seed, "model_options": dict(options or {}), "seq_len": seq_len})
    if synthetic:
        spec, batches = _synthetic_lm(cfg.batch_size, seq_len or SYNTHETIC_LM_SEQ_LEN, seed)
    else:
        bundle = load_data(cfg.data, cfg.data_dir, cfg.seq_len)
        split = limit_split(bundle.split("train"), None)
        if cfg.batch_size > len(split):
            raise ConfigError(f"batch size {cfg.batch_size} exceeds the {len(split)} training examples of {data}")
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(split), generator=g)
        n = min(N_BATCHES, len(split) // cfg.batch_size)
        batches = [split[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]] for i in range(n)]
        spec = bundle.spec
    return ModelSpec(model, cfg.batch_size, data, spec, batches, cfg.model_options, cfg.optimizer, cfg)


def _build(ms: ModelSpec, backend: str, seed: int, options: dict[str, Any] | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ms.model, ms.spec, ms.options if options is None else options, backend)


# ---- steps -----------------------------------------------------------------------------------


def make_steps(ms: ModelSpec, pass_: str, seed: int = 0) -> dict[str, Callable[[], Any]]:
    """{'bigmodel': step, 'torch': step}: one call is one step on the next batch."""
    out = {}
    for backend in ("bigmodel", "torch"):
        net = _build(ms, backend, seed)
        if pass_ == "train":
            opt = make_optimizer(ms.train_config, net.parameters())
            out[backend] = _train_step(net, opt, ms)
        else:
            out[backend] = _infer_step(net, ms)
    return out


def _train_step(net, opt, ms: ModelSpec):
    position = [0]
    net.train()

    def step():
        x, y = ms.batches[position[0] % len(ms.batches)]
        position[0] += 1
        loss, _, _ = loss_and_correct(net(x), y, ms.spec.task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def _infer_step(net, ms: ModelSpec):
    position = [0]
    net.eval()

    def step():
        x, _ = ms.batches[position[0] % len(ms.batches)]
        position[0] += 1
        with torch.no_grad():
            return net(x)
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
    nets = {b: _build(ms, b, seed, options) for b in ("bigmodel", "torch")}
    for (name, p), q in zip(nets["bigmodel"].state_dict().items(), nets["torch"].state_dict().values()):
        if not torch.equal(p, q):
            return f"initial weights differ between backends at {name}"
    x, y = ms.batches[0]
    if pass_ == "infer":
        outs = {}
        for b, net in nets.items():
            net.eval()
            with torch.no_grad():
                outs[b] = net(x)
        problem = close(outs["bigmodel"], outs["torch"].double(), rtol=1e-3, atol=1e-4)
        return None if problem is None else f"inference output: {problem}"
    losses = {}
    for b, net in nets.items():
        net.train()
        torch.manual_seed(seed + 1)
        loss, _, _ = loss_and_correct(net(x), y, ms.spec.task)
        loss.backward()
        losses[b] = loss.detach()
    problem = close(losses["bigmodel"], losses["torch"].double(), rtol=1e-4, atol=1e-5)
    if problem:
        return f"first-batch loss: {problem}"
    for (name, p), q in zip(nets["bigmodel"].named_parameters(), nets["torch"].parameters()):
        if (p.grad is None) != (q.grad is None):
            return f"gradient of {name}: present on one backend only"
        if p.grad is not None:
            scale = float(q.grad.abs().max()) if q.grad.numel() else 0.0
            problem = close(p.grad, q.grad.double(), rtol=1e-3, atol=1e-3 * scale + 1e-8)
            if problem:
                return f"gradient of {name}: {problem}"
    return None


def case(ms: ModelSpec, pass_: str, seed: int = 0) -> Case:
    """A harness Case: 'ours' is the bigmodel backend's step, 'torch' torch's."""
    if pass_ not in PASSES:
        raise ConfigError(f"pass must be one of {', '.join(PASSES)}, got {pass_!r}")
    state: dict = {}

    def steps():
        if not state:
            state.update(make_steps(ms, pass_, seed))
        return state

    report = layer_report(_build(ms, "bigmodel", seed), "bigmodel")
    fallback = f" (torch.nn: {', '.join(report['fallback'])})" if report["fallback"] else ""
    return Case(
        suite="model",
        name=f"{ms.model} {pass_} batch {ms.batch_size}{fallback}",
        params={"model": ms.model, "pass": pass_, "batch_size": ms.batch_size, "data": ms.data,
                "optimizer": ms.optimizer if pass_ == "train" else None, "model_options": ms.options,
                "layers": report},
        ours=lambda: steps()["bigmodel"](),
        torch=lambda: steps()["torch"](),
        check=lambda: validate(ms, pass_, seed),
        work={"samples": float(ms.batch_size)},
    )


def cases(models: Sequence[str] = MODELS, passes: Sequence[str] = PASSES, batch_size: int | None = None,
          options: dict[str, dict[str, Any]] | None = None, data: str | None = None, seed: int = 0) -> Iterator[Case]:
    for m in models:
        ms = prepare(m, batch_size, data, (options or {}).get(m), seed)
        for p in passes:
            yield case(ms, p, seed)


# ---- profiler breakdown ----------------------------------------------------------------------


@dataclass
class Breakdown:
    """Self CPU time per step by layer family, for each backend: ms, the median over `steps`
    profiled steps (so the families of one side need not add up to any single step exactly)."""

    model: str
    pass_: str
    steps: int
    ms: dict[str, dict[str, float]] = field(default_factory=dict)  # backend -> family -> ms per step
    top_other: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # backend -> [(op, ms)]

    def total(self, backend: str) -> float:
        return sum(self.ms.get(backend, {}).values())

    def families(self) -> list[str]:
        present = {f for side in self.ms.values() for f, v in side.items() if v > 0}
        return [f for f in OP_FAMILIES if f in present] + [OTHER]

    def rows(self) -> list[dict[str, Any]]:
        out = []
        tb, tt = self.total("bigmodel"), self.total("torch")
        for fam in self.families():
            b = self.ms.get("bigmodel", {}).get(fam, 0.0)
            t = self.ms.get("torch", {}).get(fam, 0.0)
            out.append({"family": fam, "bigmodel_ms": b, "bigmodel_share": b / tb if tb else None,
                        "torch_ms": t, "torch_share": t / tt if tt else None,
                        "ratio": (b / t) if t > 0 and b > 0 else None})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "pass": self.pass_, "profiled_steps": self.steps,
                "unit": "ms of self CPU time per step (median over the profiled steps, under the profiler)",
                "rows": self.rows(),
                "total_ms": {b: self.total(b) for b in self.ms},
                "top_other_ops": {b: [{"op": n, "ms": v} for n, v in ops] for b, ops in self.top_other.items()},
                "notes": {f: NOTES[f] for f in self.families() if f in NOTES}}


def group_events(events, side: str) -> tuple[dict[str, float], dict[str, float]]:
    """Self CPU time (us) per family over profiler `events` (FunctionEvents with cpu_parent),
    each op counted for the nearest family-mapped op on its stack; and the unmapped ops' times."""
    fam_us: dict[str, float] = {}
    other_ops: dict[str, float] = {}
    cache: dict[int, str | None] = {}
    for ev in events:
        fam = None
        node, chain = ev, []
        while node is not None:
            key = id(node)
            if key in cache:
                fam = cache[key]
                break
            chain.append(key)
            fam = family_of(node.name, side)
            if fam is not None:
                break
            node = node.cpu_parent
        for key in chain:
            cache.setdefault(key, fam)
        us = float(ev.self_cpu_time_total)
        name = fam or OTHER
        fam_us[name] = fam_us.get(name, 0.0) + us
        if fam is None:
            other_ops[ev.name] = other_ops.get(ev.name, 0.0) + us
    return fam_us, other_ops


def profile(steps: dict[str, Callable[[], Any]], n_steps: int = 5, warmup: int = 1) -> dict[str, list[tuple]]:
    """Run each backend's step `warmup` times, then profile `n_steps` single steps per backend,
    alternating backends (A B A B ...) so that both see the same load on a shared machine;
    returns backend -> one (family us, other ops us) per profiled step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    for step in steps.values():
        for _ in range(warmup):
            step()
    out: dict[str, list[tuple]] = {backend: [] for backend in steps}
    for _ in range(n_steps):
        for backend, step in steps.items():
            with tprofile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            out[backend].append(group_events(prof.events(), backend))
    return out


def breakdown(ms: ModelSpec, pass_: str, n_steps: int = 5, seed: int = 0, top: int = 5) -> Breakdown:
    """Per family, the median over `n_steps` profiled steps of its self CPU time in one step
    (a median, so that one step slowed down by another process does not skew a family)."""
    import statistics

    grouped = profile(make_steps(ms, pass_, seed), n_steps)
    bd = Breakdown(ms.model, pass_, n_steps)
    for backend, per_step in grouped.items():
        fams = {f for fam_us, _ in per_step for f in fam_us}
        bd.ms[backend] = {f: statistics.median(fam_us.get(f, 0.0) for fam_us, _ in per_step) / 1e3 for f in fams}
        other: dict[str, float] = {}
        for _, ops in per_step:
            for n, us in ops.items():
                other[n] = other.get(n, 0.0) + us
        ranked = sorted(other.items(), key=lambda kv: -kv[1])[:top]
        bd.top_other[backend] = [(n, us / 1e3 / n_steps) for n, us in ranked]
    return bd


# ---- rendering -------------------------------------------------------------------------------


def render_breakdown(bd: Breakdown):
    from rich.table import Table

    table = Table(title=f"{bd.model} {bd.pass_}: self CPU time per step by layer family "
                        f"(torch.profiler, median of {bd.steps} steps)", title_justify="left")
    for col in ("family", "bigmodel ms", "share", "torch ms", "share", "bigmodel/torch"):
        table.add_column(col, justify="left" if col == "family" else "right")

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    for r in bd.rows():
        ratio = r["ratio"]
        rtxt = "-" if ratio is None else (f"[green]{ratio:.2f}x[/]" if ratio <= 1 else f"[yellow]{ratio:.2f}x[/]")
        table.add_row(r["family"], f"{r['bigmodel_ms']:.3f}", pct(r["bigmodel_share"]), f"{r['torch_ms']:.3f}",
                      pct(r["torch_share"]), rtxt)
    table.add_row("total", f"{bd.total('bigmodel'):.3f}", "", f"{bd.total('torch'):.3f}", "", "")
    return table


def breakdown_markdown(bd: Breakdown) -> str:
    lines = [f"{bd.model} {bd.pass_} (self CPU ms per step, torch.profiler, {bd.steps} steps):", "",
             "| family | bigmodel ms | share | torch ms | share | bigmodel/torch |", "|---|---:|---:|---:|---:|---:|"]
    def share(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    for r in bd.rows():
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['family']} | {r['bigmodel_ms']:.3f} | {share(r['bigmodel_share'])} | {r['torch_ms']:.3f} | "
                     f"{share(r['torch_share'])} | {ratio} |")
    for fam, note in bd.to_dict()["notes"].items():
        lines.append(f"\nNote ({fam}): {note}")
    return "\n".join(lines) + "\n"


def step_lines(results: Sequence[CaseResult]) -> list[str]:
    """'cnn train batch 64: 812 samples/s (bigmodel) vs 790 (torch), 1.03x' per timed case."""
    out = []
    for r in results:
        if r.status == "ok":
            out.append(f"{r.name}: {r.throughput('samples', 'ours'):,.0f} samples/s with --backend bigmodel, "
                       f"{r.throughput('samples', 'torch'):,.0f} with --backend torch: speedup {r.speedup:.2f}x")
    return out
