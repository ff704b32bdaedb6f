"""The standard benchmark suite (`bigmodel bench all`), defined as data in benchmarks/suite.toml,
and the one source of every bench command's default shapes and timing (`family()`).

A suite file has one table per family (pool, gemm, conv, lstm, attention, model), each listing
its cases at the family's reference shapes, and `sweeps.*` tables for the scaling plots
(attention time and peak memory against sequence length, conv time against batch, GEMM GFLOP/s
against size). `[settings]` holds the timing defaults and `[quick]` what --quick replaces them
with; any family table may override warmup / repeats / max_seconds for itself.

load_suite() checks the whole file first, so a typo fails at once with the file and the key at
fault (SuiteError), never half-way through a long run. Values are checked by the family's own
config types (configs.py), the same checks a command-line --shape goes through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import BigmodelError, ConfigError
from . import configs as C

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


@dataclass
class Family:
    """One family's (or sweep's) part of a suite: its checked settings, and `make(**overrides)`
    building its cases lazily (a bench command passes its command-line options as overrides)."""

    name: str  # "pool", ..., or "sweep:attention"
    timing: dict
    settings: dict
    build: Callable[..., list]
    options: dict = field(default_factory=dict)

    def make(self, **overrides) -> list:
        return self.build(**{**self.settings, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class Suite:
    path: Path
    families: list[Family]

    def names(self) -> list[str]:
        return [f.name for f in self.families]


class _Reader:
    """Turns the config types' ConfigError into a SuiteError naming the file and the key."""

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

    def check(self, where: str, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:  # "field: what" from configs.py
            raise SuiteError(f"{self.path}: {where}.{exc}") from None

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
                    out[k] = self.check(where, C.integer, v, k, 0 if k == "warmup" else 1)
        return out

    def cases(self, data: dict, where: str, key: str = "cases") -> list:
        v = data.get(key)
        if not isinstance(v, list) or not v:
            raise self.error(f"{where}.{key}", f"expected a non-empty list of tables, got {v!r}")
        return v

    def choice_lists(self, d: dict, where: str, spec: dict[str, tuple]) -> dict:
        return {k: self.check(where, C.choices, d.get(k, list(allowed)), allowed, k) for k, allowed in spec.items()}


def _read(path: Path) -> dict:
    from .._io import tomllib as _tomllib

    tomllib = _tomllib()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the suite file ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML ({exc})") from None


def load_suite(path: str | os.PathLike | None = None, quick: bool = False, only: Sequence[str] | None = None) -> Suite:
    """Parse and check a suite file. `only` keeps the named families (sweeps count as their
    family: --only attention keeps the attention sweep too)."""
    from .families import PARSERS, SWEEP_PARSERS

    path = Path(path) if path is not None else DEFAULT_SUITE
    data = _read(path)
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
    sweeps = r.table(data.get("sweeps", {}), "sweeps", SWEEPS)
    families = [PARSERS[n](r, data[n], n, base) for n in FAMILIES if n in data]
    families += [SWEEP_PARSERS[n](r, sweeps[n], f"sweeps.{n}", base) for n in SWEEPS if n in sweeps]
    if quick:
        for fam in families:
            fam.timing = dict(quick_t)
    if only is not None:
        families = [f for f in families if f.name.split(":")[-1] in only]
    if not families:
        raise SuiteError(f"{path}: no families to run" + (f" (after --only {','.join(only)})" if only else ""))
    return Suite(path, families)


def family(name: str, path: str | os.PathLike | None = None) -> Family:
    """The standard suite's `name` family: a bench command's default shapes and timing."""
    for fam in load_suite(path).families:
        if fam.name == name:
            return fam
    raise SuiteError(f"{path or DEFAULT_SUITE}: has no [{name}] table")


@dataclass
class FamilyRun:
    name: str
    results: list  # harness.Result
    timing: dict = field(default_factory=dict)


def run_family(fam: Family, on_result: Callable[[Any], None] | None = None, **overrides) -> FamilyRun:
    """Build and run one family's cases; a family whose cases cannot even be built is reported as
    one 'error' result, and the suite goes on."""
    from .harness import Result, run_cases

    t = fam.timing
    try:
        cases = fam.make(**overrides)
    except Exception as exc:  # noqa: BLE001 - reported, never hidden
        res = Result(fam.name, f"{fam.name} (setting up its cases)", {}, "error", f"{type(exc).__name__}: {exc}")
        if on_result:
            on_result(res)
        return FamilyRun(fam.name, [res], t)
    if fam.name != "model":
        return FamilyRun(fam.name, run_cases(cases, t["warmup"], t["repeats"], t["max_seconds"], on_result), t)
    from .profile import breakdown

    results = run_cases([c for _, c in cases], t["warmup"], t["repeats"], t["max_seconds"], on_result)
    steps = fam.options.get("profile_steps", 5)
    for (ms, _), r in zip(cases, results):
        if r.status == "ok" and steps:  # never profile a case that failed validation
            try:
                r.extra["breakdown"] = breakdown(ms, r.params["pass"], steps).to_dict()
            except Exception as exc:  # noqa: BLE001
                r.message = f"profiler breakdown failed: {type(exc).__name__}: {exc}"
    return FamilyRun(fam.name, results, t)


def suite_json(runs: Sequence[FamilyRun], env: dict, meta: dict) -> dict:
    """One JSON document for the whole run (report.results_to_json), with the timing settings
    and case count of each family in its meta."""
    from .report import results_to_json

    meta = {**meta, "families": {run.name: {"timing": run.timing, "cases": len(run.results)} for run in runs}}
    return results_to_json([r for run in runs for r in run.results], env, meta)
