"""`bigmodel train` and `bigmodel eval`: checkpoints, exact resume, Ctrl-C, NaN
handling, fine-tuning, evaluation on either backend, run folders, and the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

import bigmodel
from bigmodel.engine import Reporter, Trainer, evaluate_checkpoint, load_checkpoint, resolve, train
from bigmodel.engine import trainer as trainer_mod
from bigmodel.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from bigmodel_cli.app import app

from _helpers import model_state, subprocess_env, tiny_config, write_text_corpus

runner = CliRunner()
TIMING_KEYS = {"epoch_seconds", "val_seconds", "samples_per_s"}


def _strip_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


# ---------------------------------------------------------------------------------------------
# training, checkpoints and exact resume
class _StopAt(Reporter):
    """Asks the trainer to stop (as Ctrl-C does) at the end of an epoch or after a step."""

    def __init__(self, epoch_end=None, step=None):
        self.trainer, self.epoch_end, self.step = None, epoch_end, step

    def on_epoch_end(self, record):
        if record["epoch"] == self.epoch_end:
            self.trainer.request_stop()

    def on_step(self, epoch, step, steps, loss, rate):
        if self.step is not None and (epoch, step) == self.step:
            self.trainer.request_stop()


@pytest.mark.parametrize("stop", [{"epoch_end": 1}, {"step": (2, 3)}], ids=["after-epoch-1", "inside-epoch-2"])
def test_exact_resume_bit_for_bit(tmp_path, stop):
    """Stopped and resumed, the run ends with the uninterrupted run's weights, bit for bit.

    The tiny cnn has dropout (RNG), runs bigmodel's max-pool kernel, and uses Adam with a cosine
    schedule, so model, optimizer, scheduler, RNG and batch position all have to be restored.
    """
    common = dict(epochs=3, optimizer="adam", scheduler="cosine", seed=5)
    full = train(tiny_config(tmp_path, name="full", **common))
    assert full.status == "finished" and full.epoch == 3

    rep = _StopAt(**stop)
    t = Trainer(tiny_config(tmp_path, name="cut", **common), rep)
    rep.trainer = t
    cut = t.run()
    assert cut.status == "interrupted" and cut.step < full.step
    ck = load_checkpoint(cut.run_dir / "last.pt")
    assert (ck["epoch"], ck["epoch_step"]) == ((1, 0) if "epoch_end" in stop else (1, 4))

    resumed = train(resolve({"resume": str(cut.run_dir / "last.pt")}))
    assert resumed.status == "finished" and resumed.run_dir == cut.run_dir and resumed.step == full.step
    a, b = model_state(full.run_dir / "last.pt"), model_state(cut.run_dir / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert _strip_timing(resumed.records) == _strip_timing(full.records)
    lines = (cut.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_resume_refuses_to_change_the_run(tmp_path):
    res = train(tiny_config(tmp_path, model="mlp", epochs=1))
    with pytest.raises(ConfigError, match="cannot change lr when resuming"):
        resolve({"resume": str(res.run_dir), "lr": 0.5})
    more = train(resolve({"resume": "latest", "out": str(tmp_path / "runs"), "epochs": 2}))  # epochs may grow
    assert more.epoch == 2 and [r["epoch"] for r in more.records] == [1, 2]
    with pytest.raises(CheckpointError, match="no run with a last.pt under"):
        resolve({"resume": "latest", "out": str(tmp_path / "empty")})


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = trainer_mod.loss_and_correct
    calls = {"n": 0}

    def poisoned(logits, y, task):
        calls["n"] += 1
        loss, correct, count = real(logits, y, task)
        return (loss * float("nan") if calls["n"] == 11 else loss), correct, count  # step 3 of epoch 2

    monkeypatch.setattr(trainer_mod, "loss_and_correct", poisoned)
    cfg = tiny_config(tmp_path, model="mlp", epochs=3, name="nan")
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 2, step 3 of 8") as exc:
        train(cfg)
    run = tmp_path / "runs" / "nan"
    assert f"the last good checkpoint is kept: {run / 'last.pt'} (epoch 1)" in str(exc.value)
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert all(torch.isfinite(v).all() for v in model_state(run / "last.pt").values())


def test_divergence_from_a_huge_learning_rate_via_cli(tmp_path):
    res = runner.invoke(app, ["train", "mlp", "--limit", "256", "--epochs", "2", "--optimizer", "sgd",
                              "--lr", "1e30", "--out", str(tmp_path)])
    assert res.exit_code == 3, res.output
    assert "training loss became" in res.stderr and "Try a lower --lr" in res.stderr


def test_checkpoint_errors(tmp_path):
    res = train(tiny_config(tmp_path, model="mlp", epochs=1, name="ok"))
    good = res.run_dir / "last.pt"
    assert load_checkpoint(res.run_dir)["path"].endswith("best.pt")  # a folder means its best.pt
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt: file is empty"):
        load_checkpoint(empty)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt: truncated or corrupt checkpoint"):
        load_checkpoint(cut)
    plain = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), plain)
    with pytest.raises(CheckpointError, match="state_dict.pt: not a bigmodel checkpoint \\(found a dict without"):
        load_checkpoint(plain)
    text = tmp_path / "notes.pt"
    text.write_text("hello, I am not a checkpoint\n" * 10)
    with pytest.raises(CheckpointError, match="notes.pt: not a bigmodel checkpoint"):
        load_checkpoint(text)
    old = tmp_path / "v0.pt"
    torch.save({"format": "bigmodel-checkpoint", "version": 0}, old)
    with pytest.raises(CheckpointError, match="format version 0 is not supported"):
        load_checkpoint(old)
    # the command line says the same, without a traceback
    out = runner.invoke(app, ["eval", str(cut)])
    assert out.exit_code == 2 and "truncated or corrupt checkpoint" in out.stderr and "Traceback" not in out.output


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    res = train(tiny_config(tmp_path, model="mlp", epochs=1, name="a"))
    before = (res.run_dir / "last.pt").read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    from bigmodel.engine.checkpoint import save_checkpoint

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(res.run_dir / "last.pt", {"x": 1})
    assert (res.run_dir / "last.pt").read_bytes() == before
    assert not [p for p in res.run_dir.iterdir() if p.name.endswith(".tmp")]


def test_init_from_fine_tunes_from_a_checkpoint(tmp_path):
    base = train(tiny_config(tmp_path, epochs=1, name="base"))
    cfg = tiny_config(tmp_path, epochs=1, name="tuned", init_from=str(base.run_dir / "best.pt"), lr=1e-9,
                      optimizer="sgd", momentum=0.0, model_options={"hidden": 16})
    tuned = train(cfg)
    a, b = model_state(base.run_dir / "best.pt"), model_state(tuned.run_dir / "last.pt")
    for k in a:  # lr 1e-9: the weights barely move from where the checkpoint left them
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert tuned.records[0]["epoch"] == 1 and tuned.run_dir != base.run_dir
    with pytest.raises(CheckpointError, match="holds a 'cnn' model, not 'mlp'"):
        train(tiny_config(tmp_path, model="mlp", init_from=str(base.run_dir / "best.pt")))


def test_every_isa_path_trains_alike(tmp_path):
    finals = []
    for isa in bigmodel.available_isas():
        with bigmodel.use_isa(isa):
            res = train(tiny_config(tmp_path, epochs=1, max_steps=4, name=f"isa-{isa}"))
        finals.append(model_state(res.run_dir / "last.pt"))
    for other in finals[1:]:
        for k in finals[0]:
            torch.testing.assert_close(other[k], finals[0][k], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# evaluation
def test_eval_on_either_backend(tmp_path):
    res = train(tiny_config(tmp_path, epochs=1, name="e", backend="bigmodel"))
    ours = evaluate_checkpoint(res.run_dir / "best.pt", backend="bigmodel")
    theirs = evaluate_checkpoint(res.run_dir / "best.pt", backend="torch")
    assert ours["split"] == "val" and ours["count"] == 1000
    assert ours["accuracy"] == theirs["accuracy"]
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    assert ours["accuracy"] == pytest.approx(res.records[-1]["val_acc"])
    cm = torch.tensor(ours["confusion_matrix"])
    assert cm.sum() == 1000 and cm.diag().sum() == round(1000 * ours["accuracy"])
    assert [c["support"] for c in ours["per_class"]] == [100] * 10
    for c, row, col in zip(ours["per_class"], cm, cm.T):
        i = int(c["class"])
        assert c["recall"] == pytest.approx(float(cm[i, i] / row.sum()))
        if col.sum():
            assert c["precision"] == pytest.approx(float(cm[i, i] / col.sum()))


def test_eval_cli_table_json_and_results_file(tmp_path):
    res = train(tiny_config(tmp_path, epochs=1, name="e", backend="torch"))
    out = runner.invoke(app, ["eval", str(res.run_dir), "--backend", "bigmodel"])
    assert out.exit_code == 0, out.output
    for text in ("accuracy", "per class", "confusion matrix", "precision", "recall", "F1", "backend torch"):
        assert text in out.stdout
    rf = tmp_path / "r.json"
    out = runner.invoke(app, ["eval", str(res.run_dir / "last.pt"), "--json", "--results-file", str(rf),
                              "--batch-size", "100", "--split", "train"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data == json.loads(rf.read_text())
    assert data["split"] == "train" and data["count"] == 4000 and len(data["confusion_matrix"]) == 10
    out = runner.invoke(app, ["eval", str(res.run_dir), "--split", "test"])
    assert out.exit_code == 2 and "has no 'test' split" in out.stderr
    out = runner.invoke(app, ["eval", str(res.run_dir), "--backend", "numpy"])
    assert out.exit_code == 2 and "backend must be one of bigmodel, torch" in out.stderr


# ---------------------------------------------------------------------------------------------
# the command line
def test_cli_train_run_folder_json_and_config_round_trip(tmp_path):
    out = tmp_path / "runs"
    args = ["train", "mlp", "-o", "hidden=32", "--limit", "256", "--epochs", "2", "--batch-size", "32",
            "--out", str(out), "--name", "first", "--seed", "3"]
    res = runner.invoke(app, args + ["--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    run = out / "first"
    assert summary["run_dir"] == str(run) and summary["status"] == "finished" and len(summary["epochs"]) == 2
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "curves.png"}
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2] and all(0 <= m["val_acc"] <= 1 for m in metrics)
    assert "layers:" in (run / "config.yaml").read_text()
    # the run's config.yaml reproduces it exactly
    res = runner.invoke(app, ["train", "--config", str(run / "config.yaml"), "--name", "again"])
    assert res.exit_code == 0, res.output
    a, b = model_state(run / "last.pt"), model_state(out / "again" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the same name again is refused rather than overwritten
    res = runner.invoke(app, ["train", "--config", str(run / "config.yaml"), "--name", "again"])
    assert res.exit_code == 2 and "already holds a run" in res.stderr


def test_cli_plain_log_lines_and_summary_table_when_not_a_terminal(tmp_path):
    res = runner.invoke(app, ["train", "cnn", "-o", "channels=4,8", "-o", "hidden=16", "--limit", "256",
                              "--epochs", "2", "--batch-size", "32", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "epoch 1/2 step 8/8: loss" in text and "samples/s" in text
    assert "epoch 2/2: train loss" in text and "val acc" in text
    assert "bigmodel.nn layers: Conv2d, MaxPool2d" in text
    if not hasattr(bigmodel.nn, "Conv2d"):
        assert "falling back to torch.nn for Conv2d" in text
    assert "train acc" in text and "best: epoch" in text  # the epoch summary table and the last line
    assert "\x1b[" not in text  # no progress-bar escape codes in a log file


@pytest.mark.parametrize("args,message", [
    (["--optimizer", "rmsprop"], "option 'optimizer' must be one of sgd, adam, adamw, got 'rmsprop'"),
    (["--scheduler", "linear"], "option 'scheduler' must be one of none, step, cosine"),
    (["--backend", "jax"], "option 'backend' must be one of bigmodel, torch"),
    (["--epochs", "0"], "option 'epochs' must be at least 1"),
    (["-o", "channels"], "--model-opt expects KEY=VALUE"),
    (["-o", "depth=3"], "cnn has no model option 'depth'"),
    (["--data", "csv:/nonexistent/x.csv"], "/nonexistent/x.csv: file not found"),
    (["--data", "mnist", "--data-dir", "/nonexistent"], "/nonexistent: MNIST folder not found"),
    (["--resume", "a.pt", "--init-from", "b.pt"], "a.pt: checkpoint not found"),
    (["--device", "cuda"], "no CUDA device is available"),
])
def test_cli_bad_options(tmp_path, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = runner.invoke(app, ["train", "--out", str(tmp_path), "--limit", "64", "--epochs", "1"] + args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output


def test_text_language_model_and_csv_classifier(tmp_path):
    corpus = write_text_corpus(tmp_path / "corpus.txt")
    res = runner.invoke(app, ["train", "transformer-lm", "--data", f"text:{corpus}", "--seq-len", "32",
                              "-o", "dim=16", "-o", "depth=1", "-o", "heads=2", "-o", "mlp_dim=32",
                              "--epochs", "4", "--lr", "0.01", "--batch-size", "8", "--out", str(tmp_path / "lm"),
                              "--name", "lm"])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(tmp_path / "lm" / "lm" / "best.pt")
    assert ck["data"]["vocab"][0] == "<unk>" and set(ck["data"]["vocab"][1:]) == set(corpus.read_text()[:-300])
    out = runner.invoke(app, ["eval", str(tmp_path / "lm" / "lm"), "--json"])
    data = json.loads(out.stdout)
    assert data["task"] == "lm" and data["perplexity"] == pytest.approx(2.718281828 ** data["loss"])
    assert data["perplexity"] < len(ck["data"]["vocab"]) / 2  # well beyond uniform guessing

    csv = tmp_path / "labels.csv"
    rows = ["text,label"] + [f"{'good fine nice' if i % 2 else 'bad awful poor'} item {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(80)]
    csv.write_text("\n".join(rows) + "\n")
    res = runner.invoke(app, ["train", "lstm", "--data", f"csv:{csv}", "-o", "hidden=8", "-o", "embed_dim=8",
                              "--epochs", "5", "--lr", "0.02", "--batch-size", "8", "--out", str(tmp_path / "c"), "--name", "c",
                              "--json"])
    assert res.exit_code == 0, res.output
    out = runner.invoke(app, ["eval", str(tmp_path / "c" / "c"), "--json"])
    data = json.loads(out.stdout)
    assert data["classes"] == ["neg", "pos"] and data["accuracy"] == 1.0


# ---------------------------------------------------------------------------------------------
# Ctrl-C, for real, in a separate process
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    cmd = [sys.executable, "-m", "bigmodel_cli", "train", "mlp", "--limit", "512", "--epochs", "500",
           "--batch-size", "16", "--out", str(tmp_path), "--name", "int"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=subprocess_env(), cwd=tmp_path)
    lines = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("epoch 1/500:") or time.monotonic() > deadline:
                break
        assert any(l.startswith("epoch 1/500:") for l in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "interrupted: finishing this step" in output and "checkpoint saved to" in output
    assert "Traceback" not in output
    ck = load_checkpoint(tmp_path / "int" / "last.pt")
    assert ck["epoch"] >= 1 and ck["step"] >= 32
    # and it resumes from there
    more = runner.invoke(app, ["train", "--resume", str(tmp_path / "int" / "last.pt"), "--epochs",
                               str(ck["epoch"] + 1), "--json"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)["epochs_completed"] == ck["epoch"] + 1


# ---------------------------------------------------------------------------------------------
# an honest quality bar that a broken model, optimizer or data pipeline would fail
def test_short_cnn_run_learns_the_digits(tmp_path):
    res = train(resolve({"model": "cnn", "model_options": {"channels": "8,16"}, "epochs": 3, "lr": 3e-3,
                         "out": str(tmp_path)}))
    assert res.records[-1]["val_acc"] >= 0.94, res.records


def test_bench_train_times_both_backends_and_writes_every_format(tmp_path):
    # the transformer has dropout in its attention, which the two backends draw differently: its
    # check must run with dropout off (it failed validation before that)
    out_json, out_md, out_csv = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.csv"
    res = runner.invoke(app, ["bench", "train", "-m", "mlp", "-m", "transformer", "--steps", "2", "--warmup", "0",
                              "--repeats", "2", "--threads", "1", "--json", str(out_json), "--markdown", str(out_md),
                              "--csv", str(out_csv)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out_json.read_text())
    results = {r["name"].split()[0]: r for r in doc["results"]}
    assert set(results) == {"mlp", "transformer"}
    for r in results.values():
        assert r["suite"] == "train" and r["status"] == "ok", r
        assert r["ours"]["median_ms"] > 0 and r["torch"]["median_ms"] > 0
    assert "mlp" in out_md.read_text() and "transformer" in out_md.read_text()
    assert out_csv.read_text().splitlines()[0].startswith("#")  # the environment header
    assert "s/epoch" in res.output or "epoch" in res.output


def test_bench_train_unknown_model_is_a_clear_error():
    res = runner.invoke(app, ["bench", "train", "-m", "resnet9000"])
    assert res.exit_code == 2
    assert "resnet9000" in res.output
