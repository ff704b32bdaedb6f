"""Per-layer-family breakdown of a model step under torch.profiler (CPU).

A few steps of each backend run under the profiler, alternating backends, and the self CPU time
of every profiled op is grouped by layer family: an op counts for the family of the nearest op
on its call stack (itself included) that OP_FAMILIES names, so the aten::empty inside
bigmodel::conv2d counts as conv2d, and the aten::addmm calls of a decomposed torch LSTM count
as lstm. Everything else (linear layers, norms, the loss, the optimizer, autograd bookkeeping)
is "other", which both backends share.

The profiler's own start/stop trace lines (written by the C++ side straight to file descriptor
2, whatever KINETO_LOG_LEVEL says) are dropped: quiet_profiler_stderr() points fd 2 at a
temporary file while a step is profiled and passes on everything else that was written there.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

from .model import ModelSpec, make_steps

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
        "bigmodel": (r"bigmodel::gemm\w*",),
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


# The trace lines kineto's SyncActivityProfilerHandler writes around every profiled region.
_NOISE = re.compile(r"^(USDT|STAGE):\S+ \S+ \d+:\d+ \S+\.cpp:\d+\] ")


@contextlib.contextmanager
def quiet_profiler_stderr():
    """Run the block with file descriptor 2 redirected to a temporary file, then write back to
    stderr every line of it except the profiler's own trace lines (so real warnings still show)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (an embedding host): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode(errors="replace").splitlines(True) if not _NOISE.match(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


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
            with quiet_profiler_stderr(), tprofile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            out[backend].append(group_events(prof.events(), backend))
    return out


def breakdown(ms: ModelSpec, pass_: str, n_steps: int = 5, seed: int = 0, top: int = 5) -> Breakdown:
    """Per family, the median over `n_steps` profiled steps of its self CPU time in one step
    (a median, so that one step slowed down by another process does not skew a family)."""
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
