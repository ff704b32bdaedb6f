"""Scaling curves of a suite run (`bigmodel bench all --plot FILE.png`, `bigmodel bench plot`): one
figure, four panels, bigmodel against torch in each:

    attention time vs sequence length      attention peak memory growth vs sequence length
    conv2d time vs batch                   GEMM GFLOP/s vs size

drawn from the `sweep:*` results of a suite JSON document. A panel whose sweep is missing from
the run, or whose cases all failed, says so instead of drawing nothing. The PNG is written
atomically (temporary file in the same folder + rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class PlotError(ValueError):
    """The plot cannot be drawn or written (bad path, no matplotlib)."""


def check_writable(path: str | os.PathLike, option: str = "--plot") -> Path:
    """Fail early (before a long run) when `path` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise PlotError(f"{option}: {path} is a directory; give a file name such as scaling.png")
    if not parent.is_dir():
        raise PlotError(f"{option}: cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PlotError(f"{option}: cannot write {path}: folder {parent} is not writable")
    return path


def _ok(doc: dict[str, Any], suite: str) -> list[dict[str, Any]]:
    return [r for r in doc.get("results", []) if r.get("suite") == suite and r.get("status") == "ok"]


def _series(rows, x_of, y_of):
    pts = sorted((x_of(r), y_of(r)) for r in rows if y_of(r) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def _panel(ax, rows, x_of, sides, title, xlabel, ylabel, logx=True, logy=False):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    drawn = False
    for label, y_of, style in sides:
        xs, ys = _series(rows, x_of, y_of)
        if xs:
            ax.plot(xs, ys, style, label=label)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no results in this run", ha="center", va="center", transform=ax.transAxes)
        return
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def draw(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Draw the four panels of `doc` (a suite JSON document) into the PNG `path`, atomically."""
    path = check_writable(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise PlotError(f"--plot needs matplotlib ({exc})") from None

    def impl(r, name, key):
        t = (r.get("impls") or {}).get(name)
        return None if t is None else t.get(key)

    def side(r, which, key="median_ms"):
        t = r.get(which)
        return None if t is None else t.get(key)

    env = doc.get("environment", {})
    attn, conv, gemm = _ok(doc, "sweep:attention"), _ok(doc, "sweep:conv"), _ok(doc, "sweep:gemm")
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    a0 = attn[0]["params"] if attn else {}
    shape = f" (B={a0.get('B')}, H={a0.get('H')}, E={a0.get('E')}, {a0.get('pass')})" if a0 else ""
    _panel(axes[0][0], attn, lambda r: r["params"]["L"],
           [("bigmodel", lambda r: impl(r, "bigmodel", "median_ms"), "o-"),
            ("torch SDPA (flash)", lambda r: impl(r, "torch", "median_ms"), "s--")],
           "attention time" + shape, "sequence length L", "ms (median)", logy=True)
    _panel(axes[0][1], attn, lambda r: r["params"]["L"],
           [("bigmodel", lambda r: impl(r, "bigmodel", "peak_rss_growth_mib"), "o-"),
            ("torch SDPA (flash)", lambda r: impl(r, "torch", "peak_rss_growth_mib"), "s--")],
           "attention peak memory growth" + shape, "sequence length L", "MiB")
    c0 = conv[0]["params"] if conv else {}
    cshape = (f" ({c0['shape'][1]}x{c0['shape'][2]}x{c0['shape'][3]} -> {c0['out_channels']}, "
              f"k{c0['kernel_size']}, {c0['layout']} {c0['pass']})") if c0 else ""
    _panel(axes[1][0], conv, lambda r: r["params"]["shape"][0],
           [("bigmodel", lambda r: side(r, "ours"), "o-"), ("torch", lambda r: side(r, "torch"), "s--")],
           "conv2d time" + cshape, "batch", "ms (median)", logy=True)
    _panel(axes[1][1], gemm, lambda r: r["params"]["M"],
           [("bigmodel", lambda r: side(r, "ours", "GFLOP_per_s"), "o-"),
            ("torch.mm", lambda r: side(r, "torch", "GFLOP_per_s"), "s--")],
           "square GEMM throughput", "size n (n x n x n)", "GFLOP/s")
    fig.suptitle(f"bigmodel {env.get('bigmodel', '?')} vs torch {env.get('torch', '?')}: {env.get('cpu', '?')}, "
                 f"{env.get('threads', '?')} threads, ISA {env.get('isa', '?')}, {env.get('date', '')}", fontsize=9)
    fig.tight_layout()
    from .._io import atomic_open

    try:
        with atomic_open(path) as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
