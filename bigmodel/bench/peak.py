"""The machine's fp32 peak, measured once by our FMA-throughput loop and cached.

`fp32_peak(threads)` runs bigmodel._C.fma_peak_gflops on the best ISA path this CPU supports
(the machine's ceiling) and on the active path: every thread runs independent register FMAs
(no memory traffic) for ~0.5 s of its own CPU time, best of four slices, and the figure is
sum over threads of 2 * lanes * FMAs / CPU seconds. CPU time rather than wall time, so other
processes on a shared machine do not lower the ceiling.

The result is cached in $XDG_CACHE_HOME/bigmodel/peak.json (default ~/.cache/bigmodel), keyed by
CPU model, ISA path and thread count, so a different CPU, path or thread count measures afresh.
The file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bigmodel

from .report import cpu_model

MEASURE_SECONDS = 0.5


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bigmodel" / "peak.json"


def _load(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(path: Path, data: dict) -> None:
    from .._io import write_text

    try:
        write_text(path, json.dumps(data, indent=2, sort_keys=True))
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time


def _key(isa: str, threads: int) -> str:
    return f"{cpu_model()}|{isa}|{threads} threads"


def measured_gflops(isa: str, threads: int, refresh: bool = False) -> float:
    """fp32 FMA peak of one ISA path at `threads` threads, from the cache or measured now."""
    path = cache_path()
    data = _load(path)
    key = _key(isa, threads)
    if not refresh and isinstance(data.get(key), (int, float)) and data[key] > 0:
        return float(data[key])
    with bigmodel.use_isa(isa):
        value = float(bigmodel._C.fma_peak_gflops(threads, MEASURE_SECONDS))
    data = _load(path)  # another process may have added entries meanwhile
    data[key] = value
    _store(path, data)
    return value


def fp32_peak(threads: int, refresh: bool = False) -> dict:
    """{'machine': GFLOP/s of the best path, 'machine_isa': its name, 'active': GFLOP/s of the
    active path, 'active_isa': its name, 'threads': threads, 'cache': path}."""
    best = bigmodel.available_isas()[0]
    active = bigmodel.active_isa()
    machine = measured_gflops(best, threads, refresh)
    active_peak = machine if active == best else measured_gflops(active, threads, refresh)
    return {"machine": machine, "machine_isa": best, "active": active_peak, "active_isa": active,
            "threads": threads, "cache": str(cache_path())}
