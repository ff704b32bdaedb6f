"""`bigmodel bench model`: JSON schema, validation before timing, the profiler breakdown's
family mapping, and bad arguments."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from _helpers import subprocess_env

from bigmodel.bench import model as model_bench
from bigmodel.bench import profile
from bigmodel.bench.harness import run_cases
from bigmodel_cli.app import app

runner = CliRunner()


def flat(text: str) -> str:
    """CLI output with Rich's error-box borders and line wrapping removed."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").replace("─", " ").split())
TINY_CNN = ["--model-opt", "channels=4,8", "--model-opt", "hidden=16"]
ENV_KEYS = {"cpu": str, "cores": int, "threads": int, "isa": str, "torch": str, "bigmodel": str, "date": str}


def _tiny(name="cnn", batch=8):
    opts = {"cnn": {"channels": "4,8", "hidden": 16}, "lstm": {"hidden": 12},
            "transformer": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32},
            "transformer-lm": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32}}[name]
    return model_bench.prepare(name, batch, None, opts, seq_len=16 if name == "transformer-lm" else None)


def test_bench_model_json_schema(tmp_path):
    out = tmp_path / "model.json"
    r = runner.invoke(app, ["bench", "model", "cnn", "--batch-size", "8", *TINY_CNN, "--threads", "1",
                            "--warmup", "1", "--repeats", "3", "--profile-steps", "1", "--json-file", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "bigmodel-bench/1"
    for key, typ in ENV_KEYS.items():
        assert isinstance(doc["environment"][key], typ), key
    assert "git_commit" in doc["environment"] and doc["environment"]["threads"] == 1
    assert [res["params"]["pass"] for res in doc["results"]] == ["train", "infer"]
    for res in doc["results"]:
        assert res["suite"] == "model" and res["status"] == "ok", res
        assert res["params"]["batch_size"] == 8
        for side in ("ours", "torch"):
            assert len(res[side]["times_ms"]) == 3 and res[side]["median_ms"] > 0 and res[side]["iqr_ms"] >= 0
            assert res[side]["samples_per_s"] == pytest.approx(8 / (res[side]["median_ms"] / 1e3))
        assert res["speedup"] == pytest.approx(res["torch"]["median_ms"] / res["ours"]["median_ms"])
    assert [bd["pass"] for bd in doc["breakdown"]] == ["train", "infer"]
    for bd in doc["breakdown"]:
        fams = {row["family"]: row for row in bd["rows"]}
        assert {"conv2d", "max_pool2d", "other"} <= fams.keys()
        for row in bd["rows"]:
            assert set(row) == {"family", "bigmodel_ms", "bigmodel_share", "torch_ms", "torch_share", "ratio"}
        assert sum(row["bigmodel_share"] for row in bd["rows"]) == pytest.approx(1.0)
    assert "samples/s" in r.output and "self CPU time per step by layer family" in r.output


@pytest.mark.parametrize("name,family", [("cnn", "conv2d"), ("lstm", "lstm"), ("transformer-lm", "attention")])
def test_breakdown_puts_bigmodel_ops_under_their_family(name, family):
    ms = _tiny(name)
    torch.set_num_threads(1)
    bd = profile.breakdown(ms, "train", n_steps=1)
    # Our op shows up under its family on the bigmodel side; torch's twin on the torch side.
    assert bd.ms["bigmodel"].get(family, 0) > 0 and bd.ms["torch"].get(family, 0) > 0
    # No bigmodel:: op is left in "other" (every one we run is mapped to a family).
    assert not [op for op, _ in bd.top_other["bigmodel"] if op.startswith("bigmodel::")]
    # The shares of a side add up to its whole profiled step.
    assert sum(r["bigmodel_share"] for r in bd.rows()) == pytest.approx(1.0)


def test_family_mapping_is_data():
    assert profile.family_of("bigmodel::conv2d_backward_weight", "bigmodel") == "conv2d"
    assert profile.family_of("aten::mkldnn_convolution", "torch") == "conv2d"
    assert profile.family_of("aten::max_pool2d_with_indices_backward", "torch") == "max_pool2d"
    assert profile.family_of("aten::mkldnn_rnn_layer_backward", "torch") == "lstm"
    assert profile.family_of("aten::_scaled_dot_product_flash_attention_for_cpu", "torch") == "attention"
    assert profile.family_of("bigmodel::scaled_dot_product_attention_backward", "bigmodel") == "attention"
    assert profile.family_of("aten::addmm", "torch") is None
    assert profile.family_of("aten::conv2d", "bigmodel") is None  # sides do not mix


def test_failed_validation_is_reported_and_not_timed(monkeypatch):
    ms = _tiny("cnn")
    calls = []
    c = model_bench.case(ms, "infer")
    monkeypatch.setattr(c, "check", lambda: "inference output: 3 of 80 elements differ")
    monkeypatch.setattr(c, "impls", {"bigmodel": lambda: calls.append("ours"), "torch": lambda: calls.append("torch")})
    (res,) = run_cases([c], warmup=1, repeats=3)
    assert res.status == "failed" and "3 of 80 elements differ" in res.message
    assert res.ours is None and res.torch is None and calls == []


def test_validation_catches_different_outputs(monkeypatch):
    ms = _tiny("cnn")
    real = model_bench._build

    def skewed(ms_, backend, seed, options=None):
        net = real(ms_, backend, seed, options)
        if backend == "bigmodel":
            net.register_forward_hook(lambda m, i, o: o + 1e-2)
        return net
    monkeypatch.setattr(model_bench, "_build", skewed)
    problem = model_bench.validate(ms, "infer")
    assert problem is not None and problem.startswith("inference output")


@pytest.mark.parametrize("args,fragment", [
    # one list of model names (bigmodel.models.MODELS) and one check (engine.config's, as for `bigmodel train`)
    (["resnet"], "Invalid value for NAME: unknown model 'resnet'; choose one of: cnn, lstm, transformer, "
                 "transformer-lm, mlp"),
    (["cnn", "--batch-size", "0"], "option 'batch_size' must be at least 1, got 0"),
    (["cnn", "--batch-size", "x"], "Invalid value for '--batch-size'"),
    (["cnn", "--pass", "sideways"], "expected one of train, infer or both"),
])
def test_bench_model_bad_arguments(args, fragment):
    r = runner.invoke(app, ["bench", "model", *args])
    assert r.exit_code == 2
    assert flat(fragment) in flat(r.output)


def test_bench_model_batch_larger_than_data():
    r = runner.invoke(app, ["bench", "model", "cnn", "--batch-size", "100000", *TINY_CNN])
    assert r.exit_code == 2 and "batch size 100000 exceeds" in flat(r.output)


@pytest.mark.parametrize("name", ["transformer", "transformer-lm"])
def test_train_validation_passes_with_dropout_models(name):
    ms = _tiny(name)
    assert ms.options["dropout"] > 0  # the timed models keep their dropout
    assert model_bench.validate(ms, "train") is None
    assert model_bench.validate(ms, "infer") is None


def test_bench_model_bare_json_and_no_profiler_noise(tmp_path):
    """`bench model cnn --json` (which failed before: "--json requires an argument") prints the
    document alone on stdout, and the profiler's USDT/STAGE trace lines never reach stderr (a
    real process: the lines are written by C++ straight to file descriptor 2)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "bigmodel_cli", "bench", "model", "cnn", "--batch-size", "8",
                        *TINY_CNN, "--threads", "1", "--warmup", "0", "--repeats", "2", "--profile-steps", "2",
                        "--pass", "infer", "--json"], capture_output=True, text=True, timeout=300,
                       # outside the checkout, so `-m` imports the bigmodel under test, not the sources
                       cwd=tmp_path, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["breakdown"] and doc["results"][0]["status"] == "ok"
    assert "USDT" not in r.stderr and "profiler_start" not in r.stderr and "STAGE:" not in r.stderr, r.stderr


def test_quiet_profiler_stderr_keeps_other_lines(capfd):
    import os

    with profile.quiet_profiler_stderr():
        os.write(2, b"USDT:2026-01-01 00:00:00 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"a real warning\n")
    err = capfd.readouterr().err
    assert "a real warning" in err and "profiler_start" not in err


def test_epoch_mode_cycles_through_one_epoch():
    from bigmodel.data import load_data

    n_train = len(load_data("embedded", None, None).split("train"))
    ms = model_bench.prepare("mlp", 1000, None, {}, epoch=True)
    sizes = [len(y) for _, y in ms.batches]  # every training example once; only the last batch may be short
    assert sum(sizes) == n_train and set(sizes[:-1]) == {1000} and len(sizes) == -(-n_train // 1000)
    n = len(sizes)
    c = model_bench.case(ms, "train")
    assert c.params["epoch_steps"] == n and f"epoch of {n} steps" in c.name
    (res,) = run_cases([c], warmup=0, repeats=2)
    secs = model_bench.epoch_seconds(res)
    assert res.status == "ok" and secs["bigmodel"] == pytest.approx(res.ours.median_ms * n / 1e3)


def test_bench_model_epoch_option(tmp_path):
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["bench", "model", "mlp", "--epoch", "--steps", "2", "--pass", "train", "--warmup", "0",
                            "--threads", "1", "--json-file", str(out)])
    assert r.exit_code == 0, r.output
    (res,) = json.loads(out.read_text())["results"]
    assert res["params"]["epoch_steps"] == 2 and len(res["ours"]["times_ms"]) == 2  # repeats: the epoch's steps
    assert "s per epoch (2 steps)" in flat(r.output)
