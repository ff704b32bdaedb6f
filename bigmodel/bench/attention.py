"""Attention benchmark: bigmodel's fused attention against torch's SDPA (its flash kernel) and a
naive softmax(QK^T)V, in the same run, forward and forward+backward, causal and not.

Each case is a harness Case with three implementations (bigmodel, torch, naive; the baseline is
torch) and memory=True: the harness validates it against the float64 reference, times the three
in alternating rounds and measures each one's peak memory growth over one call (memory.py), to
show the fused kernels' O(L*E) extra memory next to the naive version's O(L*S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F

import bigmodel
from bigmodel import reference

from .configs import integer
from .harness import OURS, Case, Result, close, dtype_name, lazy


@dataclass(frozen=True)
class AttnConfig:
    B: int
    H: int
    L: int
    E: int

    def __post_init__(self):
        for name in ("B", "H", "L", "E"):
            integer(getattr(self, name), name)

    @property
    def label(self) -> str:
        return f"{self.B}x{self.H}x{self.L}x{self.E}"


# The naive version materialises B*H*L*S scores several times over (scores, probabilities and,
# in backward, their gradients); it runs only while one such matrix stays under this size.
NAIVE_LIMIT_BYTES = 1 << 30

IMPLS = ("bigmodel", "torch", "naive")
PASSES = ("fwd", "fwd+bwd")


def naive_attention(q, k, v, is_causal=False):
    """softmax(Q K^T / sqrt(E)) V with the full score matrix, in plain PyTorch."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if is_causal:
        L, S = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(L, S, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def torch_flash(q, k, v, is_causal=False):
    """torch.nn.functional.scaled_dot_product_attention, pinned to its flash backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)


def attention_flops(cfg: AttnConfig, causal: bool, pass_: str) -> float:
    """Useful FLOPs: 4*B*H*L*S*E forward (QK^T and PV) over the visible scores; the backward is
    counted as 2.5x the forward (five GEMMs instead of two), as FlashAttention reports it."""
    L = S = cfg.L
    visible = L * (L + 1) / 2 if causal else L * S
    fwd = 4.0 * cfg.B * cfg.H * visible * cfg.E
    return fwd if pass_ == "fwd" else 3.5 * fwd


# ---- cases -----------------------------------------------------------------------------------


def cases(configs: Sequence[AttnConfig], causal: Iterable[bool] = (False, True),
          passes: Iterable[str] = PASSES, dtype: torch.dtype = torch.float32, device: str = "cpu",
          naive: bool = True, seed: int = 0, suite: str = "attention", memory: bool = True) -> Iterator[Case]:
    """One case per (config, pass, causal). Inputs are made lazily, one case at a time. `naive`
    None leaves the naive version out without listing it as skipped (the sweeps)."""
    causal, passes = tuple(causal), tuple(passes)
    for cfg in configs:
        for pass_ in passes:
            for c in causal:
                yield _make_case(cfg, c, pass_, dtype, device, naive, seed, suite, memory)


def _make_case(cfg: AttnConfig, causal: bool, pass_: str, dtype, device, naive, seed, suite, memory) -> Case:
    shape = (cfg.B, cfg.H, cfg.L, cfg.E)

    def make():
        g = torch.Generator().manual_seed(seed)
        q, k, v, go = (torch.randn(shape, generator=g).to(device=device, dtype=dtype) for _ in range(4))
        return dict(q=q, k=k, v=v, go=go, leaves=[t.detach().clone().requires_grad_(True) for t in (q, k, v)])

    inputs = lazy(make)

    def run(fn):
        s = inputs()
        if pass_ == "fwd":
            with torch.no_grad():
                return fn(s["q"], s["k"], s["v"], is_causal=causal)
        out = fn(*s["leaves"], is_causal=causal)
        return torch.autograd.grad(out, s["leaves"], s["go"])

    def check():
        return _check(inputs(), cfg, causal, pass_)

    fns = {OURS: lambda: run(bigmodel.ops.scaled_dot_product_attention), "torch": lambda: run(torch_flash)}
    skipped = {}
    score_bytes = cfg.B * cfg.H * cfg.L * cfg.L * torch.finfo(dtype).bits // 8
    if naive is None:
        pass
    elif not naive:
        skipped["naive"] = "disabled (--no-naive)"
    elif score_bytes > NAIVE_LIMIT_BYTES:
        skipped["naive"] = (f"one L x S score matrix is {score_bytes / 2**30:.1f} GiB (> "
                            f"{NAIVE_LIMIT_BYTES / 2**30:.0f} GiB); not run")
    else:
        fns["naive"] = lambda: run(naive_attention)
    name = f"{cfg.label} {'causal' if causal else 'full'} {pass_}"
    params = {"B": cfg.B, "H": cfg.H, "L": cfg.L, "S": cfg.L, "E": cfg.E, "causal": causal, "pass": pass_,
              "dtype": dtype_name(dtype), "device": device}
    return Case(suite, name, params, fns, check, {"GFLOP": attention_flops(cfg, causal, pass_) / 1e9},
                device=device, memory=memory, skipped=skipped)


def _check(s, cfg: AttnConfig, causal: bool, pass_: str) -> str | None:
    """bigmodel against the float64 reference on one head (a subset of query rows for the
    forward, so that the reference stays small at any L)."""
    q, k, v, go = (s[n][:1, :1] for n in ("q", "k", "v", "go"))
    tol = dict(rtol=1e-4, atol=1e-5) if q.dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    if pass_ == "fwd":
        rows = torch.linspace(0, cfg.L - 1, min(cfg.L, 256)).round().long().unique().to(q.device)
        with torch.no_grad():
            ours = bigmodel.ops.scaled_dot_product_attention(q, k, v, is_causal=causal)[:, :, rows]
            mask = None
            if causal:
                mask = torch.arange(cfg.L, device=q.device)[None, :] <= rows[:, None]
            expected = reference.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=mask)
        return close(ours, expected, **tol)
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    got = torch.autograd.grad(bigmodel.ops.scaled_dot_product_attention(*leaves, is_causal=causal), leaves, go)
    if cfg.L <= 4096:
        expected = reference.grads(reference.scaled_dot_product_attention, [q, k, v], go, is_causal=causal)
    else:  # the float64 reference would need several GiB here: torch's own flash kernel instead
        ref_leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        expected = torch.autograd.grad(torch_flash(*ref_leaves, is_causal=causal), ref_leaves, go)
    for name, a, e in zip(("grad_query", "grad_key", "grad_value"), got, expected):
        problem = close(a, e, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, float(e.abs().max())))
        if problem:
            return f"{name}: {problem}"
    return None


def causal_speedups(results: Sequence[Result]) -> list[tuple[str, float]]:
    """bigmodel's non-causal / causal time for each (shape, pass) measured both ways."""
    by_key: dict[tuple, dict[bool, Result]] = {}
    for r in results:
        if r.status == "ok" and "causal" in r.params:
            key = (r.params["B"], r.params["H"], r.params["L"], r.params["E"], r.params["pass"])
            by_key.setdefault(key, {})[r.params["causal"]] = r
    out = []
    for (b, h, L, e, pass_), pair in by_key.items():
        if True in pair and False in pair:
            ratio = pair[False].timings["bigmodel"].median_ms / pair[True].timings["bigmodel"].median_ms
            out.append((f"{b}x{h}x{L}x{e} {pass_}", ratio))
    return out
