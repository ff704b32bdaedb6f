"""The command line: --version, info, bench pool (output contents, JSON schema, bad options)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import bigmodel
from bigmodel_cli.app import app

runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"bigmodel {bigmodel.__version__}"


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("info", "bench"):
        assert cmd in r.stdout


def test_info_json_matches_build_info():
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0, r.stdout
    data = json.loads(r.stdout)
    info = bigmodel.build_info()
    assert data["version"] == info["version"] and data["isa_active"] == info["isa_active"]
    assert data["torch_threads"] >= 1 and data["cpu_model"]
    assert {op["name"] for op in data["ops"]} == {op["name"] for op in info["ops"]}


def test_info_table_mentions_isa_and_ops():
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0
    assert "ISA path active" in r.stdout and bigmodel.active_isa() in r.stdout
    assert "max_pool2d_backward" in r.stdout


def test_bench_pool_json_schema(tmp_path):
    out = tmp_path / "pool.json"
    r = runner.invoke(app, ["bench", "pool", "--shape", "2,8,16,16", "--kernel-size", "2", "--op", "max",
                            "--layout", "nchw", "--repeats", "3", "--warmup", "1", "--threads", "1",
                            "--json", str(out)])
    assert r.exit_code == 0, r.stdout
    data = json.loads(out.read_text())
    assert data["schema"] == "bigmodel-bench/1"
    env = data["environment"]
    for key in ("cpu", "cores", "threads", "isa", "torch", "bigmodel", "date"):
        assert key in env
    assert env["threads"] == 1
    assert len(data["results"]) == 2  # fwd and fwd+bwd
    for res in data["results"]:
        assert res["status"] == "ok"
        assert res["ours"]["median_ms"] > 0 and res["torch"]["median_ms"] > 0
        assert len(res["ours"]["times_ms"]) == 3
        assert res["speedup"] == pytest.approx(res["torch"]["median_ms"] / res["ours"]["median_ms"])
        assert res["params"]["shape"] == [2, 8, 16, 16]


@pytest.mark.parametrize("args,fragment", [
    (["--shape", "2,8,16"], "expected 4 positive integers"),
    (["--shape", "a,b,c,d"], "expected 4 comma-separated integers"),
    (["--op", "min"], "expected one of max, avg or both"),
    (["--dtype", "int8"], "expected one of float32"),
    (["--dtype", "float16"], "float16 kernels run on CUDA only"),
])
def test_bench_pool_bad_options(args, fragment):
    r = runner.invoke(app, ["bench", "pool", *args])
    assert r.exit_code == 2
    assert fragment in r.output
