"""GEMM benchmark cases: bigmodel's GEMM core against torch.mm (MKL on x86 CPU builds).

Shapes: square 256-4096, and the skinny products the other ops produce, with the operand
layouts those ops will use (a transposed weight is a transposed view, read in place):

  lstm       B=64, T=128, I=256, H=512 (the suite's first LSTM shape): input projection (B*T, I) x W_ih^T,
             one step h (B, H) x W_hh^T (plain, and with W_hh pre-packed once as the LSTM will),
             the merged weight gradient gates^T (4H, B*T) x h (B*T, H), and dh = gates x W_hh
  attention  head dim 64, q block 64 or 128 rows, kv block 512: S = Q K^T (K pre-packed too)
             and O = P V
  conv       im2col panels W (OC, C*k*k) x cols (C*k*k, OH*OW) of three of the suite's convolutions

benchmarks/suite.toml picks the groups (and any custom [M, N, K] products). Every case is validated against a float64 reference (||C - ref|| / ||ref|| < 1e-5 in float32)
before it is timed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

import bigmodel
from bigmodel import reference

from .configs import positive_ints
from .harness import OURS, Case, dtype_name, lazy


@dataclass(frozen=True)
class GemmConfig:
    group: str
    label: str
    m: int
    n: int
    k: int
    a_layout: str = "row"  # "row": a is (M, K) row-major; "col": a is the transpose of a (K, M) tensor
    b_layout: str = "row"
    prepack_b: bool = False  # ours packs B once outside the timed call (torch.mm has no equivalent)


def _lstm(b=64, t=128, i=256, h=512):
    return [
        GemmConfig("lstm", f"lstm x·W_ihᵀ ({b * t}x{i})·({i}x{4 * h})", b * t, 4 * h, i, b_layout="col"),
        GemmConfig("lstm", f"lstm step h·W_hhᵀ ({b}x{h})·({h}x{4 * h})", b, 4 * h, h, b_layout="col"),
        GemmConfig("lstm", f"lstm step h·W_hhᵀ, W_hh pre-packed", b, 4 * h, h, b_layout="col", prepack_b=True),
        GemmConfig("lstm", f"lstm dW_hh = gatesᵀ·h ({4 * h}x{b * t})·({b * t}x{h})", 4 * h, h, b * t,
                   a_layout="col"),
        GemmConfig("lstm", f"lstm dh = dgates·W_hh ({b}x{4 * h})·({4 * h}x{h})", b, h, 4 * h),
    ]


def _attention(d=64, kv=512):
    return [
        GemmConfig("attention", f"attn S = Q·Kᵀ (64x{d})·({d}x{kv})", 64, kv, d, b_layout="col"),
        GemmConfig("attention", f"attn S = Q·Kᵀ, K pre-packed", 64, kv, d, b_layout="col", prepack_b=True),
        GemmConfig("attention", f"attn S = Q·Kᵀ (128x{d})·({d}x{kv})", 128, kv, d, b_layout="col"),
        GemmConfig("attention", f"attn O = P·V (64x{kv})·({kv}x{d})", 64, d, kv),
        GemmConfig("attention", f"attn O = P·V (128x{kv})·({kv}x{d})", 128, d, kv),
    ]


def _conv():
    out = []
    for (c, oc, k, hw) in [(32, 64, 3, 28), (64, 64, 3, 56), (3, 64, 7, 112)]:
        ckk = c * k * k
        out.append(GemmConfig("conv", f"conv W·cols ({oc}x{ckk})·({ckk}x{hw * hw})", oc, hw * hw, ckk))
    return out


SQUARE = [GemmConfig("square", f"square {n}", n, n, n) for n in (256, 512, 1024, 2048, 4096)]
GROUPS = {"square": SQUARE, "lstm": _lstm(), "attention": _attention(), "conv": _conv()}


def configs(groups=("square", "lstm", "attention", "conv")) -> list[GemmConfig]:
    return [cfg for g in groups for cfg in GROUPS[g]]


def custom(m: int, n: int, k: int) -> GemmConfig:
    m, n, k = positive_ints([m, n, k], "shape", 3)
    return GemmConfig("custom", f"{m}x{k} · {k}x{n}", m, n, k)


def square(n: int, group: str = "square") -> GemmConfig:
    return GemmConfig(group, f"square {n}", n, n, n)


def _operand(rows: int, cols: int, layout: str, dtype, gen) -> torch.Tensor:
    if layout == "col":
        return torch.randn(cols, rows, generator=gen).to(dtype).t()
    return torch.randn(rows, cols, generator=gen).to(dtype)


def cases(cfgs, dtype: torch.dtype = torch.float32, seed: int = 0) -> Iterator[Case]:
    for cfg in cfgs:
        yield _make_case(cfg, dtype, seed)


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64."""
    e = expected.double()
    den = e.norm().item()
    num = (actual.double() - e).norm().item()
    return num if den == 0 else num / den


def _make_case(cfg: GemmConfig, dtype, seed) -> Case:
    def make():
        gen = torch.Generator().manual_seed(seed)
        a = _operand(cfg.m, cfg.k, cfg.a_layout, dtype, gen)
        b = _operand(cfg.k, cfg.n, cfg.b_layout, dtype, gen)
        return dict(a=a, b=b, packed=bigmodel.ops.gemm_pack(b, "b") if cfg.prepack_b else None)

    inputs = lazy(make)

    def ours():
        s = inputs()
        if s["packed"] is not None:
            return bigmodel.ops.gemm_prepacked(s["a"], s["packed"])
        return bigmodel.ops.matmul(s["a"], s["b"])

    def theirs():
        s = inputs()
        return torch.mm(s["a"], s["b"])

    def check():
        s = inputs()
        bound = 1e-5 if dtype == torch.float32 else 1e-12
        err = rel_error(ours(), reference.matmul(s["a"], s["b"]))
        return None if err < bound else f"relative error {err:.3g} exceeds {bound:g}"

    return Case(
        suite="gemm",
        name=cfg.label,
        params={"group": cfg.group, "M": cfg.m, "N": cfg.n, "K": cfg.k, "a_layout": cfg.a_layout,
                "b_layout": cfg.b_layout, "prepack_b": cfg.prepack_b, "dtype": dtype_name(dtype)},
        impls={OURS: ours, "torch": theirs},
        check=check,
        work={"GFLOP": 2.0 * cfg.m * cfg.n * cfg.k / 1e9},
    )
