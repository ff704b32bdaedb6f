"""Attention benchmark: bigmodel's fused attention against torch's SDPA (its flash kernel) and a
naive softmax(QK^T)V, in the same run, forward and forward+backward, causal and not.

Every case is validated against the float64 reference before anything is timed; the three
implementations are then timed in alternating rounds (harness.measure), and each one's peak
resident-memory growth during one call is measured (CPU: the kernel's /proc VmHWM after a
reset; CUDA: torch.cuda.max_memory_allocated), to show the fused kernels' O(L*E) extra memory
next to the naive version's O(L*S).
"""

from __future__ import annotations

import gc
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F

import bigmodel
from bigmodel import reference

from .harness import Timing, close, measure


@dataclass(frozen=True)
class AttnConfig:
    B: int
    H: int
    L: int
    E: int

    @property
    def label(self) -> str:
        return f"{self.B}x{self.H}x{self.L}x{self.E}"


# The shapes issue 6 records (B, H, L = S, E).
STANDARD = [AttnConfig(8, 8, 512, 64), AttnConfig(4, 8, 2048, 64), AttnConfig(1, 8, 4096, 64),
            AttnConfig(1, 8, 8192, 128)]

# The naive version materialises B*H*L*S scores several times over (scores, probabilities and,
# in backward, their gradients); it runs only while one such matrix stays under this size.
NAIVE_LIMIT_BYTES = 1 << 30

IMPLS = ("bigmodel", "torch", "naive")


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


@dataclass
class AttnCase:
    name: str
    params: dict[str, Any]
    fns: dict[str, Callable[[], Any]]
    check: Callable[[], str | None]
    flops: float
    skipped: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"


@dataclass
class AttnResult:
    name: str
    params: dict[str, Any]
    status: str  # "ok" | "failed" | "error"
    message: str = ""
    timings: dict[str, Timing] = field(default_factory=dict)
    peak_mib: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    flops: float = 0.0

    def speedup(self, over: str) -> float | None:
        """How many times faster bigmodel is than `over` (its median / ours)."""
        if "bigmodel" not in self.timings or over not in self.timings:
            return None
        return self.timings[over].median_ms / self.timings["bigmodel"].median_ms

    def gflops(self, impl: str) -> float | None:
        t = self.timings.get(impl)
        return None if t is None else self.flops / (t.median_ms / 1e3) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": "attention", "name": self.name, "params": self.params, "status": self.status,
            "message": self.message, "flops": self.flops, "skipped": self.skipped,
            "impls": {k: {"median_ms": t.median_ms, "iqr_ms": t.iqr_ms, "times_ms": t.times_ms,
                          "gflops": self.gflops(k), "peak_rss_growth_mib": self.peak_mib.get(k)}
                      for k, t in self.timings.items()},
            "speedup_vs_torch": self.speedup("torch"), "speedup_vs_naive": self.speedup("naive"),
        }


# ---- cases -----------------------------------------------------------------------------------


def cases(configs: Sequence[AttnConfig] | None = None, causal: Iterable[bool] = (False, True),
          passes: Iterable[str] = ("fwd", "fwd+bwd"), dtype: torch.dtype = torch.float32, device: str = "cpu",
          naive: bool = True, seed: int = 0) -> Iterator[AttnCase]:
    """One case per (config, pass, causal). Inputs are made lazily, one case at a time."""
    causal, passes = tuple(causal), tuple(passes)
    for cfg in configs or STANDARD:
        for pass_ in passes:
            for c in causal:
                yield _make_case(cfg, c, pass_, dtype, device, naive, seed)


def _make_case(cfg: AttnConfig, causal: bool, pass_: str, dtype, device, naive: bool, seed: int) -> AttnCase:
    state: dict = {}
    shape = (cfg.B, cfg.H, cfg.L, cfg.E)

    def inputs():
        if not state:
            g = torch.Generator().manual_seed(seed)
            q, k, v, go = (torch.randn(shape, generator=g).to(device=device, dtype=dtype) for _ in range(4))
            state.update(q=q, k=k, v=v, go=go,
                         leaves=[t.detach().clone().requires_grad_(True) for t in (q, k, v)])
        return state

    def run(fn):
        s = inputs()
        if pass_ == "fwd":
            with torch.no_grad():
                return fn(s["q"], s["k"], s["v"], is_causal=causal)
        out = fn(*s["leaves"], is_causal=causal)
        return torch.autograd.grad(out, s["leaves"], s["go"])

    def check():
        return _check(inputs(), cfg, causal, pass_)

    fns = {"bigmodel": lambda: run(bigmodel.ops.scaled_dot_product_attention), "torch": lambda: run(torch_flash)}
    skipped = {}
    score_bytes = cfg.B * cfg.H * cfg.L * cfg.L * torch.finfo(dtype).bits // 8
    if not naive:
        skipped["naive"] = "disabled (--no-naive)"
    elif score_bytes > NAIVE_LIMIT_BYTES:
        skipped["naive"] = (f"one L x S score matrix is {score_bytes / 2**30:.1f} GiB (> "
                            f"{NAIVE_LIMIT_BYTES / 2**30:.0f} GiB); not run")
    else:
        fns["naive"] = lambda: run(naive_attention)
    name = f"{cfg.label} {'causal' if causal else 'full'} {pass_}"
    params = {"B": cfg.B, "H": cfg.H, "L": cfg.L, "S": cfg.L, "E": cfg.E, "causal": causal, "pass": pass_,
              "dtype": str(dtype).replace("torch.", ""), "device": device}
    return AttnCase(name, params, fns, check, attention_flops(cfg, causal, pass_), skipped, device)


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


# ---- running ---------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field_name}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise, and a later allocation
    would then not show in the resident set)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_growth_mib(fn: Callable[[], Any], device: str) -> float | None:
    """Peak memory one call of `fn` adds on top of what is already resident (inputs included in
    the baseline), in MiB. CPU: trims the heap, resets the kernel's peak-RSS mark
    (/proc/self/clear_refs) and reads VmHWM - VmRSS; None where that is unavailable. CUDA:
    torch's allocator peak."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        del result
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = _status_kib("VmRSS")
    result = fn()
    peak = _status_kib("VmHWM")
    del result
    if base is None or peak is None:
        return None
    return max(0, peak - base) / 1024


def run(case_list: Iterable[AttnCase], warmup: int = 2, repeats: int = 10, max_seconds: float | None = 60.0,
        memory: bool = True, on_result: Callable[[AttnResult], None] | None = None) -> list[AttnResult]:
    """Validate, time (alternating rounds) and measure the memory of each case."""
    results = []
    for case in case_list:
        res = AttnResult(case.name, case.params, "ok", skipped=dict(case.skipped), flops=case.flops)
        try:
            problem = case.check()
            if problem is not None:
                res.status, res.message = "failed", problem
            else:
                res.timings = measure(case.fns, case.device, warmup, repeats, max_seconds)
                if memory:
                    for name, fn in case.fns.items():
                        mib = peak_memory_growth_mib(fn, case.device)
                        if mib is not None:
                            res.peak_mib[name] = mib
        except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
            res.status, res.message = "error", f"{type(exc).__name__}: {exc}"
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


# ---- rendering -------------------------------------------------------------------------------


def render_table(results: Sequence[AttnResult], title: str):
    """A Rich table: per case, each implementation's median ms (and GFLOP/s), bigmodel's speedup
    over torch and over naive, and the peak memory growth of each."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("case", no_wrap=True)
    for impl in IMPLS:
        table.add_column(f"{impl} ms", justify="right")
    table.add_column("bigmodel GFLOP/s", justify="right")
    table.add_column("vs torch", justify="right")
    table.add_column("vs naive", justify="right")
    table.add_column("peak MiB (bigmodel / torch / naive)", justify="right")
    for r in results:
        if r.status != "ok":
            table.add_row(r.name, f"[red]{r.status.upper()}[/]", *(["-"] * (len(IMPLS) + 3)))
            continue
        cells = []
        for impl in IMPLS:
            t = r.timings.get(impl)
            cells.append("-" if t is None else f"{t.median_ms:,.1f} ± {t.iqr_ms:,.1f}")
        rate = r.gflops("bigmodel")

        def sp(v):
            if v is None:
                return "-"
            return f"[green]{v:.2f}x[/]" if v >= 1 else f"[yellow]{v:.2f}x[/]"

        mem = " / ".join("-" if r.peak_mib.get(i) is None else f"{r.peak_mib[i]:,.0f}" for i in IMPLS)
        table.add_row(r.name, *cells, "-" if rate is None else f"{rate:,.1f}", sp(r.speedup("torch")),
                      sp(r.speedup("naive")), mem)
    return table


def causal_speedups(results: Sequence[AttnResult]) -> list[tuple[str, float]]:
    """bigmodel's non-causal / causal time for each (shape, pass) measured both ways."""
    by_key: dict[tuple, dict[bool, AttnResult]] = {}
    for r in results:
        if r.status == "ok":
            key = (r.params["B"], r.params["H"], r.params["L"], r.params["E"], r.params["pass"])
            by_key.setdefault(key, {})[r.params["causal"]] = r
    out = []
    for (b, h, L, e, pass_), pair in by_key.items():
        if True in pair and False in pair:
            ratio = pair[False].timings["bigmodel"].median_ms / pair[True].timings["bigmodel"].median_ms
            out.append((f"{b}x{h}x{L}x{e} {pass_}", ratio))
    return out


def results_to_json(results: Sequence[AttnResult], env: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "bigmodel-bench/1", "environment": env, "meta": meta,
            "results": [r.to_dict() for r in results],
            "causal_speedup": [{"case": k, "noncausal_over_causal": v} for k, v in causal_speedups(results)]}
