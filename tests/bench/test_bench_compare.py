"""`bigmodel bench compare`: regression detection on synthetic runs with known answers, and
the other report formats (CSV, environment report)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from bigmodel.bench.compare import BenchFileError, compare, load_results
from bigmodel_cli.app import app

runner = CliRunner()


def run_file(cases: dict[str, tuple[float, float]], status: str = "ok") -> dict:
    """A benchmark file whose cases have the given (median_ms, iqr_ms) for bigmodel's side."""
    results = []
    for name, (median, iqr) in cases.items():
        results.append({"suite": "pool", "name": name, "params": {}, "status": status, "message": "", "work": {},
                        "ours": {"median_ms": median, "iqr_ms": iqr, "times_ms": [median]},
                        "torch": {"median_ms": 10.0, "iqr_ms": 0.1, "times_ms": [10.0]}, "speedup": 10.0 / median})
    return {"schema": "bigmodel-bench/1", "environment": {}, "meta": {}, "results": results}


def test_verdicts_follow_the_iqr_threshold():
    old = run_file({"a": (10.0, 0.2), "b": (10.0, 0.2), "c": (10.0, 0.2), "d": (10.0, 2.0), "e": (1.0, 0.0)})
    new = run_file({"a": (10.5, 0.2), "b": (10.3, 0.2), "c": (9.0, 0.2), "d": (12.0, 2.0), "e": (1.015, 0.0)})
    res = compare(old, new)
    verdict = {c.key.split(": ")[1]: c.verdict for c in res.changes}
    # a: +0.5 ms > 0.4 (IQRs) -> regression; b: +0.3 < 0.4 -> unchanged; c: -1.0 -> improvement
    # d: +2 ms but the runs are noisy (IQRs 2 + 2 = 4) -> unchanged; e: +1.5% < the 2% floor
    assert verdict == {"a": "regression", "b": "unchanged", "c": "improvement", "d": "unchanged", "e": "unchanged"}
    assert [c.key for c in res.regressions] == ["pool: a"]
    assert res.changes[0].key == "pool: a"  # worst first


def test_missing_and_failed_cases_are_listed_not_counted():
    old = run_file({"a": (1.0, 0.0), "gone": (1.0, 0.0)})
    new = run_file({"a": (1.0, 0.0), "added": (1.0, 0.0)})
    new["results"].append({**run_file({"broken": (1.0, 0.0)})["results"][0], "status": "failed", "ours": None})
    old["results"].append(run_file({"broken": (1.0, 0.0)})["results"][0])
    res = compare(old, new)
    assert res.only_old == ["pool: gone"] and res.only_new == ["pool: added"] and res.skipped == ["pool: broken"]
    assert not res.regressions


def test_cli_exit_code_signals_regression(tmp_path):
    old, same, worse = tmp_path / "old.json", tmp_path / "same.json", tmp_path / "worse.json"
    old.write_text(json.dumps(run_file({"a": (10.0, 0.1)})))
    same.write_text(json.dumps(run_file({"a": (10.05, 0.1)})))
    worse.write_text(json.dumps(run_file({"a": (13.0, 0.1)})))
    r = runner.invoke(app, ["bench", "compare", str(old), str(same)])
    assert r.exit_code == 0 and "0 regression(s)" in r.stdout
    r = runner.invoke(app, ["bench", "compare", str(old), str(worse)])
    assert r.exit_code == 1 and "1 regression(s)" in r.stdout and "+30.0%" in r.stdout


@pytest.mark.parametrize("content,fragment", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    (json.dumps({"results": []}), "not a bigmodel benchmark file"),
])
def test_bad_files_give_clear_errors(tmp_path, content, fragment):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BenchFileError, match=fragment):
        load_results(path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(run_file({"a": (1.0, 0.0)})))
    r = runner.invoke(app, ["bench", "compare", str(path), str(good)])
    assert r.exit_code == 2 and fragment in r.output


def test_compare_rejects_bad_side():
    with pytest.raises(ValueError, match="side must be"):
        compare(run_file({}), run_file({}), side="theirs")


def test_csv_output(tmp_path):
    out = tmp_path / "r.csv"
    r = runner.invoke(app, ["bench", "pool", "--shape", "1,3,8,8", "--op", "avg", "--layout", "channels_last",
                            "--pass", "fwd", "--repeats", "2", "--warmup", "0", "--csv", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    header = [line for line in text.splitlines() if line.startswith("# ")]
    assert any(line.startswith("# cpu: ") for line in header) and any(line.startswith("# isa: ") for line in header)
    rows = list(csv.DictReader(io.StringIO("\n".join(l for l in text.splitlines() if not l.startswith("# ")))))
    assert len(rows) == 1 and rows[0]["status"] == "ok" and float(rows[0]["bigmodel_median_ms"]) > 0
    assert json.loads(rows[0]["params"])["layout"] == "channels_last"


def test_info_env_report():
    r = runner.invoke(app, ["info", "--env"])
    assert r.exit_code == 0
    for key in ("bigmodel:", "torch:", "python:", "cpu:", "threads:", "ISA paths:", "CUDA kernels:", "ops:"):
        assert key in r.stdout
