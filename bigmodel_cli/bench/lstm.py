"""`bigmodel bench lstm`: bigmodel.nn.LSTM against torch.nn.LSTM and a loop over torch.nn.LSTMCell."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..app_common import import_bigmodel, parse_dtype, parse_shape, set_threads
from . import common as C
from .common import bench, config


def lstm(
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="B,T,I,H: batch, steps, input and hidden size "
                                              "(repeatable). Default: the [lstm] cases of benchmarks/suite.toml."),
    pass_: Optional[str] = typer.Option(None, "--pass", help="inference, fwd+bwd or both (default: the suite's)."),
    baseline: str = typer.Option("both", "--baseline", help="lstm (torch.nn.LSTM), cell-loop (a Python loop over "
                                 "torch.nn.LSTMCell) or both."),
    dtype: str = C.DTYPE, device: str = C.DEVICE, threads: Optional[int] = C.THREADS, warmup: Optional[int] = C.WARMUP,
    repeats: Optional[int] = C.REPEATS, max_seconds: Optional[float] = C.MAX_SECONDS, as_json: bool = C.JSON_FLAG,
    json_file=C.JSON_FILE, markdown_out: Optional[str] = C.MARKDOWN_OUT, csv_out: Optional[str] = C.CSV_OUT,
) -> None:
    """LSTM layer (bigmodel.nn.LSTM) against torch.nn.LSTM and a loop over torch.nn.LSTMCell."""
    import_bigmodel()
    from bigmodel.bench import lstm as L

    passes, baselines = C.choice("--pass", pass_, L.PASSES), C.choice("--baseline", baseline, L.BASELINES)
    dt = parse_dtype(dtype, device)
    set_threads(threads)
    fam = C.suite_family("lstm")
    configs = [config(L.LstmConfig, "--shape", **dict(zip(("batch", "steps", "input_size", "hidden_size"),
                                                            parse_shape(s, 4, "--shape")))) for s in shape] if shape else None
    cases = fam.make(configs=configs, passes=passes, baselines=baselines, dtype=dt, device=device)
    bench("lstm", cases, C.timing(fam, warmup, repeats, max_seconds), C.Output(as_json, json_file, csv_out,
           markdown_out), {"device": device},
           "LSTM: bigmodel.nn.LSTM vs torch (torch column: the baseline named in the case)", ["GFLOP"])
