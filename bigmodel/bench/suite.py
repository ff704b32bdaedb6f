"""The standard benchmark suite (`bigmodel bench all`), defined as data in benchmarks/suite.toml.

A suite file has one table per family (pool, gemm, conv, lstm, attention, model), each listing
its cases at the family's reference shapes, and `sweeps.*` tables for the scaling plots
(attention time and peak memory against sequence length, conv time against batch, GEMM GFLOP/s
against size). `[settings]` holds the timing defaults and `[quick]` what --quick replaces them
with; any family table may override warmup / repeats / max_seconds for itself.

load_suite() checks the whole file first, so a typo fails at once with the file and the key at
fault (SuiteError), never half-way through a long run. run_suite() then runs each family
through its own bench module (every case validated before it is timed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import BigmodelError

FAMILIES = ("pool", "gemm", "conv", "lstm", "attention", "model")
SWEEPS = ("attention", "conv", "gemm")
TIMING_KEYS = ("warmup", "repeats", "max_seconds")
# The suite lives in the checkout's benchmarks/; an installed package carries a copy beside this
# file (setup.py's build_py puts it there).
_CHECKOUT_SUITE = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "suite.toml"
_PACKAGED_SUITE = Path(__file__).resolve().parent / "suite.toml"
DEFAULT_SUITE = _CHECKOUT_SUITE if _CHECKOUT_SUITE.is_file() or not _PACKAGED_SUITE.is_file() else _PACKAGED_SUITE


class SuiteError(BigmodelError, ValueError):
    """A suite file that is missing, not TOML, or has an unknown or malformed key; the message
    names the file and the key."""


# ---- parsing ---------------------------------------------------------------------------------


class _Reader:
    def __init__(self, path: Path):
        self.path = path

    def error(self, where: str, what: str) -> SuiteError:
        return SuiteError(f"{self.path}: {where}: {what}")

    def table(self, data: Any, where: str, allowed: Sequence[str]) -> dict:
        if not isinstance(data, dict):
            raise self.error(where, f"expected a table, got {data!r}")
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise self.error(f"{where}.{unknown[0]}", f"unknown key; expected one of {', '.join(allowed)}")
        return data

    def ints(self, value: Any, n: int | None, where: str, minimum: int = 1) -> tuple[int, ...]:
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                                             for v in value) and (n is None or len(value) == n) and value
        if not ok:
            count = f"{n} " if n is not None else ""
            bound = "positive" if minimum == 1 else f">= {minimum}"
            raise self.error(where, f"expected a list of {count}{bound} integers, got {value!r}")
        return tuple(value)

    def int(self, value: Any, where: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(where, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def choices(self, value: Any, allowed: Sequence, where: str) -> tuple:
        if not isinstance(value, list) or not value or any(v not in allowed for v in value):
            raise self.error(where, f"expected a non-empty list of {', '.join(map(repr, allowed))}, got {value!r}")
        return tuple(value)

    def timing(self, data: dict, where: str, base: dict) -> dict:
        out = dict(base)
        for k in TIMING_KEYS:
            if k in data:
                v = data[k]
                if k == "max_seconds":
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                        raise self.error(f"{where}.{k}", f"expected a positive number of seconds, got {v!r}")
                    out[k] = float(v)
                else:
                    out[k] = self.int(v, f"{where}.{k}", 0 if k == "warmup" else 1)
        return out

    def cases(self, data: dict, where: str) -> list:
        v = data.get("cases")
        if not isinstance(v, list) or not v:
            raise self.error(f"{where}.cases", f"expected a non-empty list of tables, got {v!r}")
        return v


@dataclass
class Family:
    """One family's (or sweep's) runnable part: `make()` builds its cases lazily."""

    name: str  # "pool", ..., or "sweep:attention"
    kind: str  # "cases" (harness Cases), "attention" (AttnCases) or "model"
    timing: dict
    make: Callable[[], list]
    options: dict = field(default_factory=dict)


@dataclass
class Suite:
    path: Path
    families: list[Family]

    def names(self) -> list[str]:
        return [f.name for f in self.families]


def load_suite(path: str | os.PathLike | None = None, quick: bool = False, only: Sequence[str] | None = None) -> Suite:
    """Parse and check a suite file. `only` keeps the named families (sweeps count as their
    family: --only attention keeps the attention sweep too)."""
    from .._io import tomllib as _tomllib

    tomllib = _tomllib()
    path = Path(path) if path is not None else DEFAULT_SUITE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the suite file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML ({exc})") from None
    r = _Reader(path)
    r.table(data, "top level", ("settings", "quick", *FAMILIES, "sweeps"))
    if only is not None:
        bad = [f for f in only if f not in FAMILIES]
        if bad:
            raise SuiteError(f"--only: unknown family {bad[0]!r}; expected some of {', '.join(FAMILIES)}")
    base = r.timing(r.table(data.get("settings", {}), "settings", TIMING_KEYS), "settings",
                    {"warmup": 3, "repeats": 20, "max_seconds": 10.0})
    quick_t = r.timing(r.table(data.get("quick", {}), "quick", TIMING_KEYS), "quick",
                       {"warmup": 1, "repeats": 3, "max_seconds": 1.0})
    families = []
    for name in FAMILIES:
        if name in data:
            fam = _PARSERS[name](r, data[name], name, base)
            if quick:
                fam.timing = dict(quick_t)
            families.append(fam)
    sweeps = r.table(data.get("sweeps", {}), "sweeps", SWEEPS)
    for name in SWEEPS:
        if name in sweeps:
            fam = _SWEEP_PARSERS[name](r, sweeps[name], f"sweeps.{name}", base)
            if quick:
                fam.timing = dict(quick_t)
            families.append(fam)
    if only is not None:
        families = [f for f in families if f.name.split(":")[-1] in only]
    if not families:
        raise SuiteError(f"{path}: no families to run" + (f" (after --only {','.join(only)})" if only else ""))
    return Suite(path, families)


def _pool(r: _Reader, d, where, base) -> Family:
    from . import pool

    d = r.table(d, where, ("cases", "ops", "layouts", "passes", *TIMING_KEYS))
    ops = r.choices(d.get("ops", ["max", "avg"]), ("max", "avg"), f"{where}.ops")
    layouts = r.choices(d.get("layouts", ["nchw", "channels_last"]), ("nchw", "channels_last"), f"{where}.layouts")
    passes = r.choices(d.get("passes", ["fwd", "fwd+bwd"]), ("fwd", "fwd+bwd"), f"{where}.passes")
    cfgs = []
    for i, c in enumerate(r.cases(d, where)):
        w = f"{where}.cases[{i}]"
        c = r.table(c, w, ("shape", "kernel", "stride", "padding"))
        k = r.int(c.get("kernel"), f"{w}.kernel")
        cfgs.append(pool.PoolConfig(r.ints(c.get("shape"), 4, f"{w}.shape"), k, r.int(c.get("stride", k), f"{w}.stride"),
                                    r.int(c.get("padding", 0), f"{w}.padding", 0)))
    return Family("pool", "cases", r.timing(d, where, base), lambda: list(pool.cases(cfgs, ops, layouts, passes)))


def _gemm(r: _Reader, d, where, base) -> Family:
    from . import gemm

    d = r.table(d, where, ("groups", "shapes", *TIMING_KEYS))
    groups: tuple = tuple(gemm.GROUPS) if "shapes" not in d else ()
    if "groups" in d:
        groups = r.choices(d["groups"], tuple(gemm.GROUPS), f"{where}.groups")
    if "shapes" in d and (not isinstance(d["shapes"], list) or not d["shapes"]):
        raise r.error(f"{where}.shapes", f"expected a non-empty list of [M, N, K] lists, got {d['shapes']!r}")
    shapes = [r.ints(s, 3, f"{where}.shapes[{i}]") for i, s in enumerate(d.get("shapes", []))]

    def make():
        return list(gemm.cases(gemm.configs(groups) + [gemm.custom(*s) for s in shapes]))
    return Family("gemm", "cases", r.timing(d, where, base), make)


def _conv_cfg(r: _Reader, c, w):
    from . import conv

    c = r.table(c, w, ("shape", "out_channels", "kernel", "stride", "padding", "groups"))
    shape = r.ints(c.get("shape"), 4, f"{w}.shape")
    k = r.int(c.get("kernel"), f"{w}.kernel")
    oc = r.int(c.get("out_channels", shape[1]), f"{w}.out_channels")
    g = r.int(c.get("groups", 1), f"{w}.groups")
    if shape[1] % g or oc % g:
        raise r.error(f"{w}.groups", f"{g} must divide the input ({shape[1]}) and output ({oc}) channels")
    pad = r.int(c.get("padding", k // 2), f"{w}.padding", 0)
    if min(shape[2], shape[3]) + 2 * pad < k:
        raise r.error(f"{w}.kernel", f"kernel {k} is larger than the padded input {shape[2:]} + {pad}")
    return conv.ConvConfig(shape, oc, k, r.int(c.get("stride", 1), f"{w}.stride"), pad, g)


def _conv(r: _Reader, d, where, base) -> Family:
    from . import conv

    d = r.table(d, where, ("cases", "layouts", "passes", *TIMING_KEYS))
    layouts = r.choices(d.get("layouts", ["nchw", "channels_last"]), ("nchw", "channels_last"), f"{where}.layouts")
    passes = r.choices(d.get("passes", ["fwd", "fwd+bwd"]), ("fwd", "fwd+bwd"), f"{where}.passes")
    cfgs = [_conv_cfg(r, c, f"{where}.cases[{i}]") for i, c in enumerate(r.cases(d, where))]
    return Family("conv", "cases", r.timing(d, where, base), lambda: list(conv.cases(cfgs, layouts, passes)))


def _lstm(r: _Reader, d, where, base) -> Family:
    from . import lstm

    d = r.table(d, where, ("cases", "passes", "baselines", *TIMING_KEYS))
    passes = r.choices(d.get("passes", ["inference", "fwd+bwd"]), ("inference", "fwd+bwd"), f"{where}.passes")
    baselines = r.choices(d.get("baselines", list(lstm.BASELINES)), lstm.BASELINES, f"{where}.baselines")
    cfgs = []
    for i, c in enumerate(r.cases(d, where)):
        w = f"{where}.cases[{i}]"
        c = r.table(c, w, ("batch", "steps", "input_size", "hidden_size"))
        cfgs.append(lstm.LstmConfig(*(r.int(c.get(k), f"{w}.{k}") for k in ("batch", "steps", "input_size",
                                                                               "hidden_size"))))
    return Family("lstm", "cases", r.timing(d, where, base), lambda: list(lstm.cases(cfgs, passes, baselines)))


def _attn_cfg(r: _Reader, c, w):
    from . import attention

    c = r.table(c, w, ("B", "H", "L", "E"))
    return attention.AttnConfig(*(r.int(c.get(k), f"{w}.{k}") for k in ("B", "H", "L", "E")))


def _attention(r: _Reader, d, where, base) -> Family:
    from . import attention

    d = r.table(d, where, ("cases", "causal", "passes", "naive", *TIMING_KEYS))
    causal = r.choices(d.get("causal", [False, True]), (False, True), f"{where}.causal")
    passes = r.choices(d.get("passes", ["fwd", "fwd+bwd"]), ("fwd", "fwd+bwd"), f"{where}.passes")
    naive = d.get("naive", True)
    if not isinstance(naive, bool):
        raise r.error(f"{where}.naive", f"expected true or false, got {naive!r}")
    cfgs = [_attn_cfg(r, c, f"{where}.cases[{i}]") for i, c in enumerate(r.cases(d, where))]
    return Family("attention", "attention", r.timing(d, where, base),
                  lambda: list(attention.cases(cfgs, causal, passes, naive=naive)), {"memory": True})


def _model(r: _Reader, d, where, base) -> Family:
    from . import model

    d = r.table(d, where, ("models", "passes", "profile_steps", *TIMING_KEYS))
    passes = r.choices(d.get("passes", list(model.PASSES)), model.PASSES, f"{where}.passes")
    profile_steps = r.int(d.get("profile_steps", 5), f"{where}.profile_steps", 0)
    entries = d.get("models")
    if not isinstance(entries, list) or not entries:
        raise r.error(f"{where}.models", f"expected a non-empty list of tables, got {entries!r}")
    specs = []
    for i, m in enumerate(entries):
        w = f"{where}.models[{i}]"
        m = r.table(m, w, ("name", "batch_size", "options", "data"))
        if m.get("name") not in model.MODELS:
            raise r.error(f"{w}.name", f"unknown model {m.get('name')!r}; expected one of {', '.join(model.MODELS)}")
        bs = r.int(m["batch_size"], f"{w}.batch_size") if "batch_size" in m else None
        opts = m.get("options", {})
        if not isinstance(opts, dict):
            raise r.error(f"{w}.options", f"expected a table of model options, got {opts!r}")
        data = m.get("data")
        if data is not None and not isinstance(data, str):
            raise r.error(f"{w}.data", f"expected a dataset name, got {data!r}")
        specs.append((m["name"], bs, opts, data))

    def make():
        out = []
        for name, bs, opts, data in specs:
            ms = model.prepare(name, bs, data, opts)
            out += [(ms, model.case(ms, p)) for p in passes]
        return out
    return Family("model", "model", r.timing(d, where, base), make, {"profile_steps": profile_steps})


def _sweep_attention(r: _Reader, d, where, base) -> Family:
    from . import attention

    d = r.table(d, where, ("B", "H", "E", "lengths", "causal", "pass", *TIMING_KEYS))
    B, H, E = (r.int(d.get(k), f"{where}.{k}") for k in ("B", "H", "E"))
    lengths = r.ints(d.get("lengths"), None, f"{where}.lengths")
    causal = d.get("causal", False)
    if not isinstance(causal, bool):
        raise r.error(f"{where}.causal", f"expected true or false, got {causal!r}")
    pass_ = d.get("pass", "fwd")
    if pass_ not in ("fwd", "fwd+bwd"):
        raise r.error(f"{where}.pass", f"expected 'fwd' or 'fwd+bwd', got {pass_!r}")
    cfgs = [attention.AttnConfig(B, H, L, E) for L in lengths]

    def make():
        out = list(attention.cases(cfgs, (causal,), (pass_,), naive=False))
        for c in out:
            c.skipped = {}  # the sweep compares bigmodel with torch only: naive is not part of it
        return out
    return Family("sweep:attention", "attention", r.timing(d, where, base), make, {"memory": True})


def _sweep_conv(r: _Reader, d, where, base) -> Family:
    from . import conv

    d = r.table(d, where, ("input", "out_channels", "kernel", "stride", "padding", "batches", "layout", "pass",
                           *TIMING_KEYS))
    chw = r.ints(d.get("input"), 3, f"{where}.input")
    batches = r.ints(d.get("batches"), None, f"{where}.batches")
    layout = d.get("layout", "nchw")
    if layout not in ("nchw", "channels_last"):
        raise r.error(f"{where}.layout", f"expected 'nchw' or 'channels_last', got {layout!r}")
    pass_ = d.get("pass", "fwd")
    if pass_ not in ("fwd", "fwd+bwd"):
        raise r.error(f"{where}.pass", f"expected 'fwd' or 'fwd+bwd', got {pass_!r}")
    spec = {k: d[k] for k in ("out_channels", "kernel", "stride", "padding") if k in d}
    cfgs = [_conv_cfg(r, {"shape": [n, *chw], **spec}, where) for n in batches]

    def make():
        out = list(conv.cases(cfgs, (layout,), (pass_,)))
        for c in out:
            c.suite = "sweep:conv"
        return out
    return Family("sweep:conv", "cases", r.timing(d, where, base), make)


def _sweep_gemm(r: _Reader, d, where, base) -> Family:
    from . import gemm

    d = r.table(d, where, ("sizes", *TIMING_KEYS))
    sizes = r.ints(d.get("sizes"), None, f"{where}.sizes")

    def make():
        out = list(gemm.cases([gemm.GemmConfig("square", f"square {n}", n, n, n) for n in sizes]))
        for c in out:
            c.suite = "sweep:gemm"
        return out
    return Family("sweep:gemm", "cases", r.timing(d, where, base), make)


_PARSERS = {"pool": _pool, "gemm": _gemm, "conv": _conv, "lstm": _lstm, "attention": _attention, "model": _model}
_SWEEP_PARSERS = {"attention": _sweep_attention, "conv": _sweep_conv, "gemm": _sweep_gemm}


# ---- running ---------------------------------------------------------------------------------


@dataclass
class FamilyRun:
    name: str
    kind: str
    results: list  # CaseResult, or AttnResult for kind "attention"
    breakdowns: list = field(default_factory=list)
    timing: dict = field(default_factory=dict)


def attn_as_case_result(r):
    """An AttnResult seen as a CaseResult (bigmodel vs torch's flash kernel): for CSV, Markdown
    and `bench compare`."""
    from .harness import CaseResult

    suite = r.params.get("suite", "attention")
    return CaseResult(suite, r.name, r.params, r.status, r.message, ours=r.timings.get("bigmodel"),
                      torch=r.timings.get("torch"), work={"GFLOP": r.flops / 1e9})


def _error_result(fam: Family, exc: Exception):
    from .harness import CaseResult

    return CaseResult(fam.name, f"{fam.name} (setting up its cases)", {}, "error", f"{type(exc).__name__}: {exc}")


def run_family(fam: Family, on_result: Callable[[Any], None] | None = None) -> FamilyRun:
    """Build and run one family's cases; a family whose cases cannot even be built is reported as
    one 'error' result, and the suite goes on."""
    from . import attention, model
    from .harness import run_cases

    t = fam.timing
    try:
        cases = fam.make()
    except Exception as exc:  # noqa: BLE001 - reported, never hidden
        res = _error_result(fam, exc)
        if on_result:
            on_result(res)
        return FamilyRun(fam.name, "cases", [res], timing=t)
    if fam.kind == "attention":
        results = attention.run(cases, t["warmup"], t["repeats"], t["max_seconds"], fam.options.get("memory", True),
                                on_result=on_result)
        for r in results:
            r.params = {**r.params, "suite": fam.name}
        return FamilyRun(fam.name, "attention", results, timing=t)
    if fam.kind == "model":
        results = run_cases([c for _, c in cases], t["warmup"], t["repeats"], t["max_seconds"], on_result)
        breakdowns = []
        steps = fam.options.get("profile_steps", 5)
        for (ms, _), r in zip(cases, results):
            if r.status == "ok" and steps:
                try:
                    breakdowns.append(model.breakdown(ms, r.params["pass"], steps))
                except Exception as exc:  # noqa: BLE001
                    r.message = f"profiler breakdown failed: {type(exc).__name__}: {exc}"
        return FamilyRun(fam.name, "model", results, breakdowns, timing=t)
    return FamilyRun(fam.name, "cases", run_cases(cases, t["warmup"], t["repeats"], t["max_seconds"], on_result),
                     timing=t)


def case_results(run: FamilyRun) -> list:
    return [attn_as_case_result(r) for r in run.results] if run.kind == "attention" else list(run.results)


def result_dicts(run: FamilyRun) -> list[dict]:
    out = []
    for r in run.results:
        if run.kind == "attention":
            d = r.to_dict()
            d["suite"] = run.name
            adapted = attn_as_case_result(r).to_dict()
            for k in ("ours", "torch", "speedup", "work"):
                d[k] = adapted[k]
            out.append(d)
        else:
            out.append(r.to_dict())
    return out


def failures(runs: Sequence[FamilyRun]) -> list[str]:
    return [f"{run.name}: {r.name}: {r.status}: {r.message}" for run in runs for r in run.results if r.status != "ok"]


def suite_json(runs: Sequence[FamilyRun], env: dict, meta: dict) -> dict:
    """One JSON document for the whole run: bigmodel-bench/1 (so `bench compare` reads it), with
    every family's results, the model breakdowns and the timing settings of each family."""
    return {
        "schema": "bigmodel-bench/1",
        "environment": env,
        "meta": {**meta, "families": {run.name: {"kind": run.kind, "timing": run.timing, "cases": len(run.results)}
                                      for run in runs}},
        "results": [d for run in runs for d in result_dicts(run)],
        "breakdown": [bd.to_dict() for run in runs for bd in run.breakdowns],
    }
