"""The one benchmark model: a Case (named implementations, a baseline, a check against the
float64 reference, work, optional memory), the one place that times them (`measure`: alternating
rounds, median and IQR), and the one Result type every family returns."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

OURS = "bigmodel"  # the implementation every speedup is relative to


@dataclass
class Timing:
    """Per-call times in milliseconds."""

    times_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def iqr_ms(self) -> float:
        if len(self.times_ms) < 4:
            return max(self.times_ms) - min(self.times_ms)
        q = statistics.quantiles(self.times_ms, n=4)
        return q[2] - q[0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Bigger than the L2 cache of any current GPU (50 MB on H100, 96 MB on B200); zeroing it before
# each timed call evicts the previous call's tensors, so a call cannot run from a warm L2 that
# it would not have in a real model.
_L2_FLUSH_BYTES = 256 * 2**20


def _time_once(fn: Callable[[], Any], device: torch.device, l2_flush: torch.Tensor | None = None) -> float:
    if device.type == "cuda":
        # Events on the current stream of `device` (the caller made it current), which is where
        # our ops and torch's launch. The flush is queued before the start event, so it is not
        # timed; end.synchronize() waits for everything fn queued.
        if l2_flush is not None:
            l2_flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def measure(
    fns: dict[str, Callable[[], Any]],
    device: torch.device | str = "cpu",
    warmup: int = 3,
    repeats: int = 20,
    max_seconds: float | None = None,
) -> dict[str, Timing]:
    """Times each function after `warmup` calls; rounds alternate between the functions (A B A B
    ...) so that drift in the machine's speed falls on all of them alike. Stops early, after at
    least 3 rounds, once `max_seconds` have passed. On CUDA each call is timed with CUDA events
    on the device's current stream, from a cold L2 cache."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        l2_flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.uint8, device=device) if device.type == "cuda" else None
        for fn in fns.values():
            for _ in range(warmup):
                fn()
            _sync(device)
        times: dict[str, list[float]] = {name: [] for name in fns}
        t_start = time.perf_counter()
        for r in range(repeats):
            for name, fn in fns.items():
                times[name].append(_time_once(fn, device, l2_flush))
            if max_seconds is not None and r >= 2 and time.perf_counter() - t_start > max_seconds:
                break
    return {name: Timing(ts) for name, ts in times.items()}


@dataclass
class Case:
    """One benchmark case: named implementations of the same computation on the same inputs.

    `impls` maps a name to a zero-argument call; OURS ("bigmodel") is one of them and `baseline`
    names the one its speedup is quoted against. `check` returns None when OURS agrees with the
    float64 reference, else a message: a case that fails its check is reported as failed and
    never timed. `work` maps a unit ("GB", "GFLOP", "samples") to what one call moves or does.
    With `memory`, each implementation's peak memory growth over one call is measured too.
    `skipped` names implementations left out on purpose, and why."""

    suite: str
    name: str
    params: dict[str, Any]
    impls: dict[str, Callable[[], Any]]
    check: Callable[[], str | None]
    work: dict[str, float] = field(default_factory=dict)
    baseline: str = "torch"
    device: str = "cpu"
    memory: bool = False
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    suite: str
    name: str
    params: dict[str, Any]
    status: str  # "ok" | "failed" | "error"
    message: str = ""
    timings: dict[str, Timing] = field(default_factory=dict)
    work: dict[str, float] = field(default_factory=dict)
    baseline: str = "torch"
    peak_mib: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific data (a model's breakdown)

    @property
    def ours(self) -> Timing | None:
        return self.timings.get(OURS)

    @property
    def torch(self) -> Timing | None:
        return self.timings.get(self.baseline)

    def speedup_over(self, impl: str) -> float | None:
        """How many times faster OURS is than `impl` (its median / ours)."""
        if OURS not in self.timings or impl not in self.timings:
            return None
        return self.timings[impl].median_ms / self.timings[OURS].median_ms

    @property
    def speedup(self) -> float | None:
        return self.speedup_over(self.baseline)

    def throughput(self, unit: str, impl: str = OURS) -> float | None:
        """`unit` per second of `impl` ('ours' and 'torch' name OURS and the baseline)."""
        t = {"ours": self.ours, "torch": self.torch}.get(impl, self.timings.get(impl))
        if t is None or unit not in self.work:
            return None
        return self.work[unit] / (t.median_ms / 1e3)


def run_cases(
    cases: Iterable[Case],
    warmup: int = 3,
    repeats: int = 20,
    max_seconds: float | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Validate, then time (and with `memory` measure) each case. Errors in one case are
    reported in its result, never raised."""
    from .memory import peak_memory_growth_mib

    results = []
    for case in cases:
        res = Result(case.suite, case.name, case.params, "ok", work=case.work, baseline=case.baseline,
                     skipped=dict(case.skipped))
        try:
            problem = case.check()
            if problem is not None:
                res.status, res.message = "failed", problem
            else:
                res.timings = measure(case.impls, case.device, warmup, repeats, max_seconds)
                if case.memory:
                    for name, fn in case.impls.items():
                        mib = peak_memory_growth_mib(fn, case.device)
                        if mib is not None:
                            res.peak_mib[name] = mib
        except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
            res.status, res.message, res.timings = "error", f"{type(exc).__name__}: {exc}", {}
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> str | None:
    """None if `actual` matches `expected` (computed in float64) within tolerance, else a message."""
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)} != reference {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    err = (a - e).abs()
    bound = atol + rtol * e.abs()
    bad = ~(err <= bound) & ~(a.isnan() & e.isnan())
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        worst = float(err[~(a.isnan() & e.isnan())].max()) if err.numel() else math.nan
        return (f"{int(bad.sum())} of {a.numel()} elements differ from the reference "
                f"(first at flat index {i}: {a.flatten()[i].item():.6g} vs {e.flatten()[i].item():.6g}; "
                f"max abs error {worst:.3g})")
    return None


def lazy(make: Callable[[], dict]) -> Callable[[], dict]:
    """A cached `make()`: a case's inputs are built on first use, so listing cases is cheap."""
    state: dict = {}

    def get() -> dict:
        if not state:
            state.update(make())
        return state
    return get


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
