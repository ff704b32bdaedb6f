"""The one benchmark model: a Case validated before it is timed, one Result type, one serializer
(JSON both ways, CSV, Markdown), and benchmarks/suite.toml as the only source of default shapes."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from bigmodel.bench import Case, results_from_json, results_to_json, run_cases
from bigmodel.bench import suite as suite_mod
from bigmodel.bench.report import markdown_table, result_from_dict, results_to_csv
from bigmodel_cli.app import app


def _case(check=lambda: None, calls=None, memory=False):
    calls = [] if calls is None else calls
    x = torch.randn(64)
    return Case("demo", "demo case", {"n": 64}, {"bigmodel": lambda: calls.append("b") or x * 2,
                                                 "torch": lambda: calls.append("t") or x + x,
                                                 "naive": lambda: calls.append("n") or x.mul(2)},
                check, work={"GFLOP": 1e-7}, memory=memory)


def test_failing_check_is_reported_failed_and_never_timed():
    calls = []
    (res,) = run_cases([_case(lambda: "3 of 64 elements differ", calls)], warmup=2, repeats=3)
    assert res.status == "failed" and res.message == "3 of 64 elements differ"
    assert calls == [] and res.timings == {} and res.ours is None and res.speedup is None


def test_raising_case_is_an_error_and_the_next_case_still_runs():
    def boom():
        raise RuntimeError("kaput")
    bad, good = _case(boom), _case()
    results = run_cases([bad, good], warmup=0, repeats=3)
    assert [r.status for r in results] == ["error", "ok"] and "RuntimeError: kaput" in results[0].message


def test_every_implementation_is_timed_in_alternating_rounds():
    calls = []
    (res,) = run_cases([_case(calls=calls)], warmup=0, repeats=3)
    assert calls == ["b", "t", "n"] * 3
    assert set(res.timings) == {"bigmodel", "torch", "naive"} and res.baseline == "torch"
    assert res.speedup == pytest.approx(res.torch.median_ms / res.ours.median_ms)
    assert res.speedup_over("naive") == pytest.approx(res.timings["naive"].median_ms / res.ours.median_ms)


def test_serializer_round_trip():
    (res,) = run_cases([_case(memory=True)], warmup=0, repeats=4)
    res.extra["note"] = "kept"
    doc = json.loads(json.dumps(results_to_json([res], env={"cpu": "x"}, meta={"m": 1})))
    (back,) = results_from_json(doc)
    assert (back.suite, back.name, back.params, back.status, back.work, back.baseline) == \
        (res.suite, res.name, res.params, res.status, res.work, res.baseline)
    assert {k: t.times_ms for k, t in back.timings.items()} == {k: t.times_ms for k, t in res.timings.items()}
    assert back.peak_mib == res.peak_mib and back.extra == {"note": "kept"}
    assert results_to_json([back], env={"cpu": "x"}, meta={"m": 1}) == doc
    assert markdown_table([back], ["GFLOP"]) == markdown_table([res], ["GFLOP"])
    assert results_to_csv([back], {"cpu": "x"}) == results_to_csv([res], {"cpu": "x"})


def test_old_format_results_are_read():
    old = {"suite": "pool", "name": "max 1x1x2x2", "params": {"op": "max_pool2d"}, "status": "ok", "message": "",
           "work": {"GB": 1e-9}, "ours": {"median_ms": 1.0, "iqr_ms": 0.0, "times_ms": [1.0]},
           "torch": {"median_ms": 2.0, "iqr_ms": 0.0, "times_ms": [2.0]}, "speedup": 2.0}
    r = result_from_dict(old)
    assert r.speedup == 2.0 and r.ours.times_ms == [1.0] and r.torch.times_ms == [2.0]


def test_family_modules_have_no_shapes_of_their_own():
    from bigmodel.bench import attention, conv, lstm, pool

    for mod in (pool, conv, lstm, attention):
        assert not hasattr(mod, "STANDARD"), mod.__name__


def test_command_defaults_come_from_the_suite_file(tmp_path, monkeypatch):
    suite = tmp_path / "suite.toml"
    suite.write_text('[settings]\nwarmup = 0\nrepeats = 2\n\n[pool]\nops = ["avg"]\nlayouts = ["nchw"]\n'
                     'passes = ["fwd"]\ncases = [{ shape = [1, 2, 6, 6], kernel = 3, stride = 3 }]\n')
    monkeypatch.setattr(suite_mod, "DEFAULT_SUITE", suite)
    r = CliRunner().invoke(app, ["bench", "pool", "--json"])
    assert r.exit_code == 0, r.output
    (res,) = json.loads(r.stdout)["results"]
    assert res["name"] == "avg 1x2x6x6 k3s3p0 NCHW fwd" and len(res["ours"]["times_ms"]) == 2


def test_suite_and_command_line_share_one_validation_rule(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text("[conv]\ncases = [{ shape = [2, 3, 8, 8], out_channels = 4, kernel = 3, groups = 2 }]\n")
    with pytest.raises(suite_mod.SuiteError, match=r"conv.cases\[0\].groups: 2 must divide the input \(3\)"):
        suite_mod.load_suite(bad)
    r = CliRunner().invoke(app, ["bench", "conv", "--shape", "2,3,8,8", "-o", "4", "--groups", "2"])
    assert r.exit_code == 2 and "groups: 2 must divide the input (3)" in r.output
