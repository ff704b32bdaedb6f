"""Benchmarks: cases that validate against the float64 reference, then time bigmodel against
PyTorch in the same process and thread count (median and IQR of alternating rounds).

One model for every family: a harness.Case (named implementations, a baseline, a check, work,
optional memory) run by harness.run_cases into harness.Results, serialized by report.py.
Default shapes and timing come from benchmarks/suite.toml (suite.family). The command line
(`bigmodel bench ...`) renders the results; nothing here prints."""

from .harness import Case, Result, Timing, measure, run_cases
from .report import (environment, environment_report, results_from_json, results_to_csv, results_to_json,
                     results_to_markdown)

__all__ = ["Case", "Result", "Timing", "environment", "environment_report", "measure", "results_from_json",
           "results_to_csv", "results_to_json", "results_to_markdown", "run_cases"]
