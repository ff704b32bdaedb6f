"""Benchmark harness: cases that validate against a reference, then time bigmodel against
PyTorch in the same process and thread count (median and IQR of repeats, after warm-up).

`bigmodel bench <suite>` drives it; suites live beside this file (pool.py, ...)."""

from .harness import Case, CaseResult, Timing, measure, run_cases
from .report import environment, environment_report, render_table, results_to_csv, results_to_json, results_to_markdown

__all__ = ["Case", "CaseResult", "Timing", "environment", "environment_report", "measure", "render_table",
           "results_to_csv", "results_to_json", "results_to_markdown", "run_cases"]
