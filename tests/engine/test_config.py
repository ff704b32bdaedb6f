"""Training configuration (`resolve`: defaults, model defaults, config file, flags; its errors)
and the choice of a new run's folder."""

from __future__ import annotations

import pytest

from bigmodel.engine import new_run_dir, resolve
from bigmodel.errors import ConfigError

from _helpers import tiny_config


# ---------------------------------------------------------------------------------------------
# configuration
def test_config_layers_defaults_file_and_flags(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("model: lstm\nepochs: 3\nlr: 0.01\nmodel_options: {hidden: 20, layers: 2}\n")
    cfg = resolve({"lr": 0.5, "model_options": {"layers": "3"}}, yml)
    assert (cfg.model, cfg.epochs, cfg.lr) == ("lstm", 3, 0.5)  # flags override the file
    assert cfg.model_options["hidden"] == 20 and cfg.model_options["layers"] == 3  # merged, typed
    assert cfg.batch_size == 64 and cfg.optimizer == "adam"  # the model's defaults fill the rest
    toml = tmp_path / "c.toml"
    toml.write_text('model = "transformer"\nbatch-size = 8\n[model_options]\ndim = 32\n')
    cfg = resolve({}, toml)
    assert (cfg.model, cfg.batch_size, cfg.model_options["dim"], cfg.optimizer) == ("transformer", 8, 32, "adamw")
    assert resolve({}).model == "cnn"  # `bigmodel train` with nothing: the cnn


@pytest.mark.parametrize("content,name,message", [
    ("epochs: [1\n", "c.yaml", "invalid YAML"),
    ("epochs = \n", "c.toml", "invalid TOML"),
    ("- 1\n- 2\n", "c.yaml", "must be a mapping"),
    ("epoch: 3\n", "c.yaml", "unknown option 'epoch'"),
    ("epochs: three\n", "c.yaml", "option 'epochs' must be an integer"),
    ("optimizer: rmsprop\n", "c.yaml", "option 'optimizer' must be one of sgd, adam, adamw"),
    ("lr: -1\n", "c.yaml", "option 'lr' must be positive"),
    ("lr: fast\n", "c.yaml", "option 'lr' must be a number, got 'fast'"),
    ("lr: .inf\n", "c.yaml", "option 'lr' must be a finite number, got inf"),
    ("lr = nan\n", "c.toml", "option 'lr' must be a finite number, got nan"),
    ("epochs: 3\n", "c.ini", "unknown config format .ini"),
])
def test_config_file_errors(tmp_path, content, name, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve({}, p)


def test_config_file_missing(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        resolve({}, tmp_path / "nope.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="latin.yaml: cannot read the config file \\(.*utf-8"):
        resolve({}, tmp_path / "latin.yaml")


# ---------------------------------------------------------------------------------------------
# run folders
def test_new_run_dir_named_and_timestamped(tmp_path, monkeypatch):
    named = tiny_config(tmp_path, name="exp")
    assert new_run_dir(named) == tmp_path / "runs" / "exp"
    assert not (tmp_path / "runs").exists()  # chosen, not created
    (tmp_path / "runs" / "exp").mkdir(parents=True)
    assert new_run_dir(named) == tmp_path / "runs" / "exp"  # an empty folder (no last.pt) is reused
    (tmp_path / "runs" / "exp" / "last.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="exp already holds a run; resume it with --resume .*last.pt"):
        new_run_dir(named)

    monkeypatch.setattr("time.strftime", lambda fmt: "20260101-120000")
    cfg = tiny_config(tmp_path)
    first = new_run_dir(cfg)
    assert first == tmp_path / "runs" / "cnn-20260101-120000"
    first.mkdir()
    assert new_run_dir(cfg).name == "cnn-20260101-120000-2"  # same second: a suffix, never a shared folder
    (tmp_path / "runs" / "cnn-20260101-120000-2").mkdir()
    assert new_run_dir(cfg).name == "cnn-20260101-120000-3"
