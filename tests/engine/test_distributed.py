"""Data-parallel training: `bigmodel train --nproc 2` (torch.distributed's launcher, gloo on CPU)
against one process with the doubled batch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bigmodel.engine import load_checkpoint, resolve, train
from bigmodel.models import build_model
from bigmodel.data import DataSpec

from _helpers import model_state, subprocess_env

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

OPTS = ["-o", "channels=4,8", "-o", "hidden=16", "-o", "dropout=0"]
COMMON = ["--limit", "256", "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
          "--scheduler", "none", "--seed", "11"]


def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    cmd = [sys.executable, "-m", "bigmodel_cli", "train", "cnn", *OPTS, *COMMON, "--batch-size", "16",
           "--nproc", "2", "--out", str(tmp_path), "--name", "ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "launching 2 processes" in out and "2 processes" in out
    assert out.count("epoch 1/1: train loss") == 1  # only rank 0 logs
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ddp["step"] == 8  # 256 examples / (2 processes x 16)
    assert ddp["train_config"]["nproc"] == 2

    single = train(resolve({"model": "cnn", "model_options": {"channels": "4,8", "hidden": 16, "dropout": 0},
                            "limit": 256, "epochs": 1, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                            "scheduler": "none", "seed": 11, "batch_size": 32, "out": str(tmp_path),
                            "name": "single"}))
    assert single.step == 8
    a, b = model_state(tmp_path / "ddp" / "last.pt"), model_state(tmp_path / "single" / "last.pt")
    torch.manual_seed(11)
    init = build_model("cnn", DataSpec("image", "classify", (1, 28, 28), 10),
                       {"channels": "4,8", "hidden": 16, "dropout": 0}).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=lambda m: f"{k}: {m}")
    moved = max(float((a[k] - init[k]).abs().max()) for k in a)
    assert moved > 1e-2  # the runs really trained (equal weights are not just the initial ones)
    assert ddp["records"][0]["val_acc"] == pytest.approx(single.records[0]["val_acc"], abs=0.005)


def test_a_failing_worker_fails_the_launch(tmp_path):
    cmd = [sys.executable, "-m", "bigmodel_cli", "train", "mlp", "--nproc", "2", "--data",
           f"text:{tmp_path / 'missing.txt'}", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=tmp_path)
    assert proc.returncode == 2
    assert "missing.txt: file not found" in proc.stderr
