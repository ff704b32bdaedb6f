"""LSTM benchmark cases: bigmodel.nn.LSTM against torch.nn.LSTM (oneDNN on the CPU) and against
a Python loop over torch.nn.LSTMCell, inference and forward+backward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

import bigmodel
from bigmodel import reference

from .configs import integer
from .harness import OURS, Case, close, dtype_name, lazy


@dataclass(frozen=True)
class LstmConfig:
    batch: int
    steps: int
    input_size: int
    hidden_size: int

    def __post_init__(self):
        for name in ("batch", "steps", "input_size", "hidden_size"):
            integer(getattr(self, name), name)


BASELINES = ("lstm", "cell-loop")
PASSES = ("inference", "fwd+bwd")


def flops(cfg: LstmConfig, pass_: str) -> float:
    """Nominal GEMM FLOPs: forward 2 * T*B * 4H * (I + H); the backward does twice that (dX and
    dh, dW_ih and dW_hh). Gate nonlinearities are not counted."""
    fwd = 2.0 * cfg.steps * cfg.batch * 4 * cfg.hidden_size * (cfg.input_size + cfg.hidden_size)
    return fwd if pass_ == "inference" else 3 * fwd


def _label(cfg: LstmConfig, pass_: str, baseline: str) -> str:
    vs = "nn.LSTM" if baseline == "lstm" else "LSTMCell loop"
    return f"B{cfg.batch} T{cfg.steps} I{cfg.input_size} H{cfg.hidden_size} {pass_} vs {vs}"


def cases(configs, passes=PASSES, baselines=BASELINES, dtype: torch.dtype = torch.float32,
          device: str = "cpu", seed: int = 0) -> Iterator[Case]:
    """One case per (config, pass, baseline). Modules and inputs are made lazily, per case."""
    for cfg in configs:
        for pass_ in passes:
            for baseline in baselines:
                yield _make_case(cfg, pass_, baseline, dtype, device, seed)


def _make_case(cfg: LstmConfig, pass_: str, baseline: str, dtype, device, seed) -> Case:
    def make():
        torch.manual_seed(seed)
        ref = torch.nn.LSTM(cfg.input_size, cfg.hidden_size).to(device=device, dtype=dtype)
        ours = bigmodel.nn.LSTM(cfg.input_size, cfg.hidden_size).to(device=device, dtype=dtype)
        ours.load_state_dict(ref.state_dict())
        cell = torch.nn.LSTMCell(cfg.input_size, cfg.hidden_size).to(device=device, dtype=dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(ref, f"{name}_l0"))
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(cfg.steps, cfg.batch, cfg.input_size, generator=g).to(device=device, dtype=dtype)
        gy = torch.randn(cfg.steps, cfg.batch, cfg.hidden_size, generator=g).to(device=device, dtype=dtype)
        return dict(ref=ref, ours=ours, cell=cell, x=x, xg=x.clone().requires_grad_(True), gy=gy)

    setup = lazy(make)

    def cell_loop(m, x):
        h = c = torch.zeros(cfg.batch, cfg.hidden_size, dtype=x.dtype, device=x.device)
        outs = []
        for t in range(x.shape[0]):
            h, c = m(x[t], (h, c))
            outs.append(h)
        return torch.stack(outs), (h, c)

    def run(which):
        s = setup()
        m = s[which]
        fn = (lambda inp: cell_loop(m, inp)) if which == "cell" else m
        if pass_ == "inference":
            with torch.no_grad():
                return fn(s["x"])[0]
        y = fn(s["xg"])[0]
        return torch.autograd.grad(y, [s["xg"], *m.parameters()], s["gy"])

    def check():
        s = setup()
        tol = dict(rtol=1e-4, atol=1e-4) if dtype in (torch.float32, torch.float64) else dict(rtol=3e-2, atol=3e-2)
        w = [s["ref"].weight_ih_l0, s["ref"].weight_hh_l0, s["ref"].bias_ih_l0, s["ref"].bias_hh_l0]
        if pass_ == "inference":
            with torch.no_grad():
                return close(run("ours"), reference.lstm(s["x"], None, *w)[0], **tol)
        ours = run("ours")
        expected = reference.grads(lambda x, *ws: reference.lstm(x, None, *ws)[0], [s["x"], *w], s["gy"])
        for name, a, e in zip(("input", "weight_ih", "weight_hh", "bias_ih", "bias_hh"), ours, expected):
            problem = close(a, e, **tol)
            if problem:
                return f"grad of {name}: {problem}"
        return None

    return Case(
        suite="lstm",
        name=_label(cfg, pass_, baseline),
        params={"batch": cfg.batch, "steps": cfg.steps, "input_size": cfg.input_size,
                "hidden_size": cfg.hidden_size, "pass": pass_, "baseline": baseline,
                "dtype": dtype_name(dtype)},
        impls={OURS: lambda: run("ours"), "torch": lambda: run("ref" if baseline == "lstm" else "cell")},
        check=check,
        work={"GFLOP": flops(cfg, pass_) / 1e9},
        device=device,
    )
