"""One parser per table of benchmarks/suite.toml: each checks its table (through the family's
config types) and returns a suite.Family whose build() makes the family's cases.

Adding a family is one parser here plus its cases() module; see README.md, "Adding a benchmark"."""

from __future__ import annotations

import torch

from . import attention, conv, gemm, lstm, model, pool
from . import configs as C
from .suite import TIMING_KEYS, Family

F32 = torch.float32


def _configs(r, d, where, cls, keys, defaults=None):
    out = []
    for i, c in enumerate(r.cases(d, where)):
        w = f"{where}.cases[{i}]"
        c = r.table(c, w, keys)
        values = {**{k: None for k in keys}, **(defaults(c) if defaults else {}), **c}  # missing: None, refused
        out.append(r.check(w, cls, **values))
    return out


def _pool(r, d, where, base) -> Family:
    d = r.table(d, where, ("cases", "ops", "layouts", "passes", *TIMING_KEYS))
    lists = r.choice_lists(d, where, {"ops": pool.OPS, "layouts": pool.LAYOUTS, "passes": pool.PASSES})
    cfgs = _configs(r, d, where, pool.PoolConfig, ("shape", "kernel", "stride", "padding"),
                    lambda c: {"stride": c.get("kernel"), "padding": 0})

    def build(configs, ops, layouts, passes, dtype=F32, device="cpu"):
        return list(pool.cases(configs, ops, layouts, passes, dtype, device))
    return Family("pool", r.timing(d, where, base), {"configs": cfgs, **lists}, build)


def _gemm(r, d, where, base) -> Family:
    d = r.table(d, where, ("groups", "shapes", *TIMING_KEYS))
    groups: tuple = tuple(gemm.GROUPS) if "shapes" not in d else ()
    if "groups" in d:
        groups = r.check(where, C.choices, d["groups"], tuple(gemm.GROUPS), "groups")
    if "shapes" in d and (not isinstance(d["shapes"], list) or not d["shapes"]):
        raise r.error(f"{where}.shapes", f"expected a non-empty list of [M, N, K] lists, got {d['shapes']!r}")
    shapes = [r.check(where, C.positive_ints, s, f"shapes[{i}]", 3) for i, s in enumerate(d.get("shapes", []))]

    def build(groups, shapes, dtype=F32):
        return list(gemm.cases(gemm.configs(groups) + [gemm.custom(*s) for s in shapes], dtype))
    return Family("gemm", r.timing(d, where, base), {"groups": groups, "shapes": shapes}, build)


CONV_KEYS = ("shape", "out_channels", "kernel", "stride", "padding", "groups")


def conv_defaults(c: dict) -> dict:
    """Unset conv keys: out_channels = C, stride 1, padding kernel // 2 ('same' for odd kernels)."""
    shape, k = c.get("shape"), c.get("kernel")
    oc = shape[1] if isinstance(shape, list) and len(shape) == 4 else None
    return {"out_channels": oc, "stride": 1, "padding": k // 2 if isinstance(k, int) else 0, "groups": 1}


def _conv_build(configs, layouts, passes, dtype=F32, device="cpu", suite="conv"):
    return list(conv.cases(configs, layouts, passes, dtype, device, suite=suite))


def _conv(r, d, where, base) -> Family:
    d = r.table(d, where, ("cases", "layouts", "passes", *TIMING_KEYS))
    lists = r.choice_lists(d, where, {"layouts": conv.LAYOUTS, "passes": conv.PASSES})
    cfgs = _configs(r, d, where, conv.ConvConfig, CONV_KEYS, conv_defaults)
    return Family("conv", r.timing(d, where, base), {"configs": cfgs, **lists}, _conv_build)


def _lstm(r, d, where, base) -> Family:
    d = r.table(d, where, ("cases", "passes", "baselines", *TIMING_KEYS))
    lists = r.choice_lists(d, where, {"passes": lstm.PASSES, "baselines": lstm.BASELINES})
    cfgs = _configs(r, d, where, lstm.LstmConfig, ("batch", "steps", "input_size", "hidden_size"))

    def build(configs, passes, baselines, dtype=F32, device="cpu"):
        return list(lstm.cases(configs, passes, baselines, dtype, device))
    return Family("lstm", r.timing(d, where, base), {"configs": cfgs, **lists}, build)


def _attention_build(configs, causal, passes, naive, dtype=F32, device="cpu", memory=True, suite="attention"):
    return list(attention.cases(configs, causal, passes, dtype, device, naive, suite=suite, memory=memory))


def _attention(r, d, where, base) -> Family:
    d = r.table(d, where, ("cases", "causal", "passes", "naive", *TIMING_KEYS))
    lists = r.choice_lists(d, where, {"causal": (False, True), "passes": attention.PASSES})
    naive = r.check(where, C.boolean, d.get("naive", True), "naive")
    cfgs = _configs(r, d, where, attention.AttnConfig, ("B", "H", "L", "E"))
    return Family("attention", r.timing(d, where, base), {"configs": cfgs, **lists, "naive": naive}, _attention_build)


def _model(r, d, where, base) -> Family:
    d = r.table(d, where, ("models", "passes", "profile_steps", *TIMING_KEYS))
    lists = r.choice_lists(d, where, {"passes": model.PASSES})
    profile_steps = r.check(where, C.integer, d.get("profile_steps", 5), "profile_steps", 0)
    specs = []
    for i, m in enumerate(r.cases(d, where, "models")):
        w = f"{where}.models[{i}]"
        m = r.table(m, w, ("name", "batch_size", "options", "data"))
        if not isinstance(m.get("options", {}), dict):
            raise r.error(f"{w}.options", f"expected a table of model options, got {m['options']!r}")
        if m.get("data") is not None and not isinstance(m["data"], str):
            raise r.error(f"{w}.data", f"expected a dataset name, got {m['data']!r}")
        from ..engine.config import make_config

        # the one check of model names and batch sizes: the one `bigmodel train` applies
        r.check(w, lambda: _named(make_config, m))
        specs.append((m["name"], m.get("batch_size"), m.get("options", {}), m.get("data")))

    def build(models, passes, epoch=False, steps=None):
        out = []
        for name, bs, opts, data in models:
            ms = model.prepare(name, bs, data, opts, epoch=epoch, steps=steps)
            out += [(ms, model.case(ms, p)) for p in passes]
        return out
    return Family("model", r.timing(d, where, base), {"models": specs, **lists}, build,
                  {"profile_steps": profile_steps})


def _named(make_config, m):
    from ..errors import ConfigError

    try:
        make_config({"model": m.get("name"), "batch_size": m.get("batch_size")})
    except ConfigError as exc:
        key = "name" if "model" in str(exc) else "batch_size"
        raise ConfigError(f"{key}: {exc}") from None


def _sweep_attention(r, d, where, base) -> Family:
    d = r.table(d, where, ("B", "H", "E", "lengths", "causal", "pass", *TIMING_KEYS))
    lengths = r.check(where, C.positive_ints, d.get("lengths"), "lengths")
    causal = r.check(where, C.boolean, d.get("causal", False), "causal")
    pass_ = r.check(where, C.one_of, d.get("pass", "fwd"), attention.PASSES, "pass")
    cfgs = [r.check(where, attention.AttnConfig, d.get("B"), d.get("H"), L, d.get("E")) for L in lengths]
    # the sweep compares bigmodel with torch only: naive is not part of it (naive=None)
    return Family("sweep:attention", r.timing(d, where, base),
                  {"configs": cfgs, "causal": (causal,), "passes": (pass_,), "naive": None,
                   "suite": "sweep:attention"}, _attention_build)


def _sweep_conv(r, d, where, base) -> Family:
    d = r.table(d, where, ("input", "out_channels", "kernel", "stride", "padding", "batches", "layout", "pass",
                           *TIMING_KEYS))
    chw = r.check(where, C.positive_ints, d.get("input"), "input", 3)
    batches = r.check(where, C.positive_ints, d.get("batches"), "batches")
    layout = r.check(where, C.one_of, d.get("layout", "nchw"), conv.LAYOUTS, "layout")
    pass_ = r.check(where, C.one_of, d.get("pass", "fwd"), conv.PASSES, "pass")
    spec = {k: d[k] for k in CONV_KEYS[1:] if k in d}
    cfgs = []
    for n in batches:
        c = {"shape": [n, *chw], **spec}
        cfgs.append(r.check(where, conv.ConvConfig, **{**conv_defaults(c), **c}))
    return Family("sweep:conv", r.timing(d, where, base),
                  {"configs": cfgs, "layouts": (layout,), "passes": (pass_,), "suite": "sweep:conv"}, _conv_build)


def _sweep_gemm(r, d, where, base) -> Family:
    d = r.table(d, where, ("sizes", *TIMING_KEYS))
    sizes = r.check(where, C.positive_ints, d.get("sizes"), "sizes")

    def build(sizes, dtype=F32):
        out = list(gemm.cases([gemm.square(n) for n in sizes], dtype))
        for c in out:
            c.suite = "sweep:gemm"
        return out
    return Family("sweep:gemm", r.timing(d, where, base), {"sizes": sizes}, build)


PARSERS = {"pool": _pool, "gemm": _gemm, "conv": _conv, "lstm": _lstm, "attention": _attention, "model": _model}
SWEEP_PARSERS = {"attention": _sweep_attention, "conv": _sweep_conv, "gemm": _sweep_gemm}
