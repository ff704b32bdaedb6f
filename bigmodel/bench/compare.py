"""Comparing two benchmark runs (`bigmodel bench compare OLD.json NEW.json`).

Both the files written before the one result type (bigmodel-bench/1 with "ours"/"torch" sides
only) and today's (which add "impls") are read: every result keeps its "ours" and "torch" sides.

A case regresses when its median time grew by more than the noise threshold

    threshold = max(min_change * old_median, old_IQR + new_IQR)

i.e. the change must exceed the sum of both runs' interquartile ranges (the spread a repeat of
the same code shows on the same machine) and a floor of `min_change` (2% by default). An
improvement is the same test in the other direction. Cases present in only one run are listed,
never counted as regressions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BenchFileError(ValueError):
    """A benchmark JSON file that is missing, unreadable or not in bigmodel's format."""


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchFileError(f"{path}: cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BenchFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("schema") != "bigmodel-bench/1" or not isinstance(data.get("results"), list):
        raise BenchFileError(f"{path}: not a bigmodel benchmark file (expected schema 'bigmodel-bench/1', "
                             f"as written by `bigmodel bench ... --json-file FILE`)")
    return data


@dataclass
class Change:
    key: str
    old_ms: float
    new_ms: float
    threshold_ms: float

    @property
    def ratio(self) -> float:
        return self.new_ms / self.old_ms

    @property
    def verdict(self) -> str:
        delta = self.new_ms - self.old_ms
        if delta > self.threshold_ms:
            return "regression"
        if -delta > self.threshold_ms:
            return "improvement"
        return "unchanged"


@dataclass
class Comparison:
    changes: list[Change]
    only_old: list[str]
    only_new: list[str]
    skipped: list[str]  # present in both but not timed in one of them (failed / error)
    differs: list[str]  # present in both with different params or work: not the same measurement

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "regression"]

    @property
    def improvements(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "improvement"]


def _key(r: dict[str, Any]) -> str:
    return f"{r.get('suite', '?')}: {r['name']}"


def _what(r: dict[str, Any]) -> tuple:
    # files written before one result type carried the suite name in attention's params too
    params = {k: v for k, v in r.get("params", {}).items() if k != "suite"}
    return params, r.get("work", {})


def compare(old: dict[str, Any], new: dict[str, Any], side: str = "ours", min_change: float = 0.02) -> Comparison:
    """Compare the `side` ('ours' or 'torch') timings of every case the two runs share."""
    if side not in ("ours", "torch"):
        raise ValueError(f"side must be 'ours' or 'torch', got {side!r}")
    if not 0 <= min_change < 1:
        raise ValueError(f"min_change must be in [0, 1), got {min_change}")
    old_by = {_key(r): r for r in old["results"]}
    new_by = {_key(r): r for r in new["results"]}
    changes, skipped = [], []
    differs = sorted(k for k in old_by.keys() & new_by.keys() if _what(old_by[k]) != _what(new_by[k]))
    for key in old_by.keys() & new_by.keys():
        a, b = old_by[key].get(side), new_by[key].get(side)
        if not a or not b or old_by[key].get("status") != "ok" or new_by[key].get("status") != "ok":
            skipped.append(key)
            continue
        threshold = max(min_change * a["median_ms"], a["iqr_ms"] + b["iqr_ms"])
        changes.append(Change(key, a["median_ms"], b["median_ms"], threshold))
    changes.sort(key=lambda c: (c.verdict != "regression", -c.ratio))  # regressions first, worst first
    return Comparison(changes, sorted(old_by.keys() - new_by.keys()), sorted(new_by.keys() - old_by.keys()),
                      sorted(skipped), differs)
