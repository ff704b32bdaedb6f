"""`bigmodel bench attention`: fused attention against torch's SDPA (flash) and a naive
softmax(QK^T)V, forward and forward+backward, causal and not, with peak memory growth."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..app_common import console, import_bigmodel, parse_dtype, parse_shape, set_threads
from . import common as C
from .common import config
from .tables import impls_table


def attention(
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="B,H,L,E with S = L (repeatable). Default: "
                                              "the [attention] cases of benchmarks/suite.toml."),
    causal: Optional[str] = typer.Option(None, "--causal", help="yes, no or both (default: the suite's)."),
    pass_: Optional[str] = typer.Option(None, "--pass", help="fwd, fwd+bwd or both (default: the suite's)."),
    naive: bool = typer.Option(True, "--naive/--no-naive", help="Also time the naive softmax(QK^T)V."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure each one's peak memory growth."),
    dtype: str = C.DTYPE, device: str = C.DEVICE, threads: Optional[int] = C.THREADS, warmup: Optional[int] = C.WARMUP,
    repeats: Optional[int] = C.REPEATS, max_seconds: Optional[float] = C.MAX_SECONDS, as_json: bool = C.JSON_FLAG,
    json_file=C.JSON_FILE, markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """Fused attention against torch's SDPA (flash) and a naive softmax(QK^T)V, forward and
    forward+backward, causal and not, with each one's peak memory growth."""
    import_bigmodel()
    from bigmodel.bench import attention as A

    flags = C.choice("--causal", causal, ("no", "yes"))
    causal_flags = None if flags is None else tuple(c == "yes" for c in flags)
    passes = C.choice("--pass", pass_, A.PASSES)
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    fam = C.suite_family("attention")
    configs = [config(A.AttnConfig, "--shape", **dict(zip("BHLE", parse_shape(s, 4, "--shape")))) for s in shape] \
        if shape else None
    cases = fam.make(configs=configs, causal=causal_flags, passes=passes, naive=naive, dtype=dt, device=device,
                     memory=memory)
    t = C.timing(fam, warmup, repeats, max_seconds)
    results = C.run(cases, t, as_json)

    def render(env):
        console.print(impls_table(results, "attention: bigmodel vs torch SDPA (flash) vs naive", A.IMPLS))
        for case, ratio in A.causal_speedups(results):
            console.print(f"causal speedup (non-causal time / causal time), bigmodel {case}: {ratio:.2f}x")
        for r in results:
            for impl, why in r.skipped.items():
                console.print(f"[dim]{r.name}: {impl} skipped: {why}[/]")
    C.emit(results, C.Output(as_json, json_file, csv_out, markdown_out),
           {"suite": "attention", **t, "device": device, "command": "bigmodel bench attention", "units": ["GFLOP"]},
           render)
