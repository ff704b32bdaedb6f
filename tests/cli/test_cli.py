"""The command line: --version, info, bench pool (output contents, JSON schema, bad options), and the one
--json convention of every command (bare --json: the document alone on stdout; --json-file PATH)."""

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
                            "--json-file", str(out)])
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


TINY_POOL = ["bench", "pool", "--shape", "1,2,8,8", "--op", "max", "--layout", "nchw", "--pass", "fwd",
             "--repeats", "2", "--warmup", "0"]


def test_bench_json_flag_prints_only_the_document_on_stdout():
    r = runner.invoke(app, [*TINY_POOL, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # nothing but the document: no table, no progress, no environment line
    assert doc["schema"] == "bigmodel-bench/1" and len(doc["results"]) == 1
    assert "pooling" not in r.stdout


def test_bench_json_file_is_written_atomically(tmp_path, monkeypatch):
    import bigmodel._io as bio

    out = tmp_path / "r.json"
    seen = []
    real = bio.write_text
    monkeypatch.setattr(bio, "write_text", lambda path, text: (seen.append(str(path)), real(path, text)))
    r = runner.invoke(app, [*TINY_POOL, "--json-file", str(out)])
    assert r.exit_code == 0, r.output
    assert str(out) in seen and json.loads(out.read_text())["results"][0]["status"] == "ok"
    assert "pooling" in r.stdout and not [p for p in tmp_path.iterdir() if p.name != "r.json"]


def test_bench_json_and_json_file_together(tmp_path):
    out = tmp_path / "r.json"
    r = runner.invoke(app, [*TINY_POOL, "--json", "--json-file", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == json.loads(out.read_text())


def test_bench_old_json_spelling_still_works_with_a_deprecation(tmp_path):
    out = tmp_path / "old.json"
    r = runner.invoke(app, [*TINY_POOL, "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["schema"] == "bigmodel-bench/1"
    assert "deprecated" in r.stderr and "--json-file" in r.stderr
    r = runner.invoke(app, [*TINY_POOL, "--json", "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)["results"]


def test_info_json_file(tmp_path):
    out = tmp_path / "info.json"
    r = runner.invoke(app, ["info", "--json-file", str(out)])
    assert r.exit_code == 0 and "ISA path active" in r.stdout
    assert json.loads(out.read_text())["version"] == bigmodel.__version__


@pytest.mark.parametrize("cmd", [["train"], ["eval"], ["info"], ["bench", "pool"], ["bench", "gemm"],
                                 ["bench", "conv"], ["bench", "lstm"], ["bench", "attention"], ["bench", "model"],
                                 ["bench", "all"]])
def test_every_json_command_has_the_same_two_options(cmd):
    import typer

    command = typer.main.get_command(app)
    for name in cmd:
        command = command.commands[name]
    opts = {o: p for p in command.params for o in p.opts}
    assert opts["--json"].is_flag and not opts["--json-file"].is_flag, cmd


def test_train_and_eval_json_stdout_and_json_file(tmp_path):
    out = tmp_path / "train.json"
    r = runner.invoke(app, ["train", "mlp", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--out",
                            str(tmp_path), "--name", "run", "--json", "--json-file", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == json.loads(out.read_text())  # stdout: the document alone
    ev = tmp_path / "eval.json"
    r = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json-file", str(ev)])
    assert r.exit_code == 0, r.output
    assert json.loads(ev.read_text())["accuracy"] >= 0 and "accuracy" in r.stdout
    r = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["model"] == "mlp"
