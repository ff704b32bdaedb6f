"""Convolution benchmark cases: bigmodel.ops.conv2d against torch.nn.functional.conv2d (oneDNN on
x86 CPU builds, cuDNN on CUDA), forward and forward+backward.

forward+backward is one forward and the gradients w.r.t. input, weight and bias (three
convolution-sized products, so 3x the forward's flops), on both sides. Every case is validated
before it is timed: our float32 results (output, or all three gradients) must be within twice
torch's own float32 error of a float64 reference, plus a small floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

import bigmodel
from bigmodel import reference

from ..errors import ConfigError

from .configs import integer, positive_ints
from .harness import OURS, Case, dtype_name, lazy

LAYOUTS = ("nchw", "channels_last")
PASSES = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class ConvConfig:
    shape: tuple[int, int, int, int]  # input (N, C, H, W)
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    def __post_init__(self):
        object.__setattr__(self, "shape", positive_ints(self.shape, "shape", 4))
        for name, low in (("out_channels", 1), ("kernel", 1), ("stride", 1), ("padding", 0), ("groups", 1)):
            integer(getattr(self, name), name, low)
        if self.shape[1] % self.groups or self.out_channels % self.groups:
            raise ConfigError(f"groups: {self.groups} must divide the input ({self.shape[1]}) and output "
                              f"({self.out_channels}) channels")
        if min(self.shape[2], self.shape[3]) + 2 * self.padding < self.kernel:
            raise ConfigError(f"kernel: {self.kernel} is larger than the padded input {self.shape[2:]} + "
                              f"{self.padding}")

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.shape[1] // self.groups, self.kernel, self.kernel)

    @property
    def out_hw(self) -> tuple[int, int]:
        h = (self.shape[2] + 2 * self.padding - self.kernel) // self.stride + 1
        w = (self.shape[3] + 2 * self.padding - self.kernel) // self.stride + 1
        return h, w

    def flops(self) -> float:
        """2 * multiply-adds of the forward."""
        oh, ow = self.out_hw
        n, c = self.shape[0], self.shape[1]
        return 2.0 * n * self.out_channels * oh * ow * (c // self.groups) * self.kernel * self.kernel


def _label(cfg: ConvConfig, layout: str, pass_: str) -> str:
    shape = "x".join(map(str, cfg.shape))
    kind = "dw" if cfg.groups > 1 and cfg.groups == cfg.shape[1] else (f"g{cfg.groups}" if cfg.groups > 1 else "")
    lay = "CL" if layout == "channels_last" else "NCHW"
    return f"{shape}->{cfg.out_channels} k{cfg.kernel}s{cfg.stride}p{cfg.padding}{kind} {lay} {pass_}"


def cases(configs, layouts=LAYOUTS, passes=PASSES, dtype: torch.dtype = torch.float32, device: str = "cpu",
          seed: int = 0, suite: str = "conv") -> Iterator[Case]:
    """One case per (config, layout, pass). Inputs are made lazily, one case at a time."""
    for cfg in configs:
        for layout in layouts:
            for pass_ in passes:
                yield _make_case(cfg, layout, pass_, dtype, device, seed, suite)


def _agree(ours: torch.Tensor, theirs: torch.Tensor, ref: torch.Tensor, what: str, dtype: torch.dtype) -> str | None:
    """None if ours is within 2x torch's own error of the float64 reference (plus a floor)."""
    if ours.shape != ref.shape:
        return f"{what}: shape {tuple(ours.shape)} != reference {tuple(ref.shape)}"
    a, t, r = ours.detach().double().cpu(), theirs.detach().double().cpu(), ref.detach().double().cpu()
    err = (a - r).abs().max().item()
    base = (t - r).abs().max().item()
    scale = r.abs().max().item()
    floor = {torch.float32: 1e-6, torch.float64: 1e-12}.get(dtype, 1e-2) * (1 + scale)
    if not err <= 2 * base + floor:
        return f"{what}: max abs error {err:.3g} against the float64 reference; torch's is {base:.3g}"
    return None


def _make_case(cfg: ConvConfig, layout: str, pass_: str, dtype, device, seed, suite) -> Case:
    kwargs = dict(stride=cfg.stride, padding=cfg.padding, groups=cfg.groups)

    def make():
        g = torch.Generator().manual_seed(seed)
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        x = torch.randn(cfg.shape, generator=g).to(device=device, dtype=dtype).contiguous(memory_format=fmt)
        w = (torch.randn(cfg.weight_shape, generator=g) / (cfg.weight_shape[1] * cfg.kernel ** 2) ** 0.5)
        w = w.to(device=device, dtype=dtype)
        b = torch.randn(cfg.out_channels, generator=g).to(device=device, dtype=dtype)
        gy = torch.randn((cfg.shape[0], cfg.out_channels, *cfg.out_hw), generator=g).to(device=device, dtype=dtype)
        return dict(x=x, w=w, b=b, gy=gy.contiguous(memory_format=fmt),
                    leaves=[t.detach().clone().requires_grad_(True) for t in (x, w, b)])

    inputs = lazy(make)

    def run(fn):
        s = inputs()
        if pass_ == "fwd":
            return fn(s["x"], s["w"], s["b"], **kwargs)
        leaves = s["leaves"]
        y = fn(*leaves, **kwargs)
        return torch.autograd.grad(y, leaves, s["gy"])

    def check():
        s = inputs()
        ours, theirs = run(bigmodel.ops.conv2d), run(F.conv2d)
        if pass_ == "fwd":
            return _agree(ours, theirs, reference.conv2d(s["x"], s["w"], s["b"], **kwargs), "output", dtype)
        expected = reference.grads(lambda a, b, c: reference.conv2d(a, b, c, **kwargs), [s["x"], s["w"], s["b"]],
                                   s["gy"])
        for name, o, t, e in zip(("grad_input", "grad_weight", "grad_bias"), ours, theirs, expected):
            problem = _agree(o, t, e, name, dtype)
            if problem is not None:
                return problem
        return None

    return Case(
        suite=suite,
        name=_label(cfg, layout, pass_),
        params={"op": "conv2d", "shape": list(cfg.shape), "out_channels": cfg.out_channels, "kernel_size": cfg.kernel,
                "stride": cfg.stride, "padding": cfg.padding, "groups": cfg.groups, "layout": layout, "pass": pass_,
                "dtype": dtype_name(dtype)},
        impls={OURS: lambda: run(bigmodel.ops.conv2d), "torch": lambda: run(F.conv2d)},
        check=check,
        work={"GFLOP": cfg.flops() / 1e9 * (1 if pass_ == "fwd" else 3)},
        device=device,
    )
