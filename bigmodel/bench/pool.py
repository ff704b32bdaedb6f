"""Pooling cases: bigmodel.ops.{max,avg}_pool2d against torch.nn.functional."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

import bigmodel
from bigmodel import reference

from .configs import integer, positive_ints
from .harness import OURS, Case, close, dtype_name, lazy

OPS = ("max", "avg")
LAYOUTS = ("nchw", "channels_last")
PASSES = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class PoolConfig:
    shape: tuple[int, int, int, int]
    kernel: int
    stride: int
    padding: int

    def __post_init__(self):
        object.__setattr__(self, "shape", positive_ints(self.shape, "shape", 4))
        integer(self.kernel, "kernel")
        integer(self.stride, "stride")
        integer(self.padding, "padding", 0)


def _label(cfg: PoolConfig, op: str, layout: str, pass_: str) -> str:
    shape = "x".join(map(str, cfg.shape))
    lay = "CL" if layout == "channels_last" else "NCHW"
    return f"{op} {shape} k{cfg.kernel}s{cfg.stride}p{cfg.padding} {lay} {pass_}"


def cases(configs: Sequence[PoolConfig], ops=OPS, layouts=LAYOUTS, passes=PASSES,
          dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0) -> Iterator[Case]:
    """One case per (config, op, layout, pass). Inputs are made lazily, one case at a time."""
    for cfg in configs:
        for op in ops:
            for layout in layouts:
                for pass_ in passes:
                    yield _make_case(cfg, op, layout, pass_, dtype, device, seed)


def _make_case(cfg, op, layout, pass_, dtype, device, seed) -> Case:
    ours_fn = bigmodel.ops.max_pool2d if op == "max" else bigmodel.ops.avg_pool2d
    torch_fn = F.max_pool2d if op == "max" else F.avg_pool2d
    ref_fn = reference.max_pool2d if op == "max" else reference.avg_pool2d
    args = (cfg.kernel, cfg.stride, cfg.padding)

    def make():
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(cfg.shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        out_shape = torch_fn(x[:1], *args).shape[1:]
        gy = torch.randn((cfg.shape[0], *out_shape), generator=g).to(device=device, dtype=dtype)
        if layout == "channels_last":
            gy = gy.contiguous(memory_format=torch.channels_last)
        return dict(x=x, xg=x.detach().clone().requires_grad_(True), gy=gy)

    inputs = lazy(make)

    def run(fn):
        s = inputs()
        if pass_ == "fwd":
            return fn(s["x"], *args)
        y = fn(s["xg"], *args)
        return torch.autograd.grad(y, s["xg"], s["gy"])[0]

    def check():
        s = inputs()
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
        if pass_ == "fwd":
            return close(run(ours_fn), ref_fn(s["x"], *args), **tol)
        expected = reference.grads(ref_fn, [s["x"]], s["gy"], kernel_size=cfg.kernel, stride=cfg.stride,
                                   padding=cfg.padding)[0]
        return close(run(ours_fn), expected, **tol)

    esize = torch.finfo(dtype).bits // 8
    n_in = cfg.shape[0] * cfg.shape[1] * cfg.shape[2] * cfg.shape[3]
    oh = (cfg.shape[2] + 2 * cfg.padding - cfg.kernel) // cfg.stride + 1
    ow = (cfg.shape[3] + 2 * cfg.padding - cfg.kernel) // cfg.stride + 1
    n_out = cfg.shape[0] * cfg.shape[1] * oh * ow
    # Nominal traffic: forward reads the input and writes the output; backward reads the output
    # gradient and writes the input gradient. (Real traffic differs by implementation.)
    gb = (n_in + n_out) * esize / 1e9 * (1 if pass_ == "fwd" else 2)
    return Case(
        suite="pool",
        name=_label(cfg, op, layout, pass_),
        params={"op": f"{op}_pool2d", "shape": list(cfg.shape), "kernel_size": cfg.kernel, "stride": cfg.stride,
                "padding": cfg.padding, "layout": layout, "pass": pass_, "dtype": dtype_name(dtype)},
        impls={OURS: lambda: run(ours_fn), "torch": lambda: run(torch_fn)},
        check=check,
        work={"GB": gb},
        device=device,
    )
