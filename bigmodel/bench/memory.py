"""Peak memory one call adds on top of what is already resident (a case with `memory=True`):
the fused attention kernels' O(L*E) extra memory next to a naive version's O(L*S)."""

from __future__ import annotations

import gc
import re
from typing import Any, Callable

import torch


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
