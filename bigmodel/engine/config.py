"""The training configuration: one dataclass, filled from (lowest to highest priority) built-in
defaults, the model's recommended defaults, a config file (YAML or TOML) and command-line flags.

A run directory's config.yaml is a valid --config file: it reproduces the run.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _io
from ..errors import ConfigError
from ..models.base import finite_float

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine")
DEVICES = ("cpu", "cuda")
# Keys a run's config.yaml carries for information only; accepted and ignored when read back.
INFO_KEYS = ("layers", "environment")


@dataclass
class TrainConfig:
    model: str = "cnn"
    model_options: dict[str, Any] = field(default_factory=dict)
    data: str = "embedded"
    data_dir: str | None = None
    seq_len: int | None = None  # token datasets: window (LM) or padded length (csv)
    limit: int | None = None  # train on only this many training examples (quick experiments)
    epochs: int | None = None  # None: the model's default
    max_steps: int | None = None  # stop after this many optimizer steps in total
    batch_size: int | None = None  # per process
    lr: float | None = None
    optimizer: str | None = None
    momentum: float = 0.9  # sgd only
    weight_decay: float | None = None
    scheduler: str | None = None
    step_epochs: int | None = None  # scheduler "step": decay every this many epochs (default: epochs / 3)
    gamma: float = 0.1  # scheduler "step": decay factor
    seed: int = 0
    device: str = "cpu"
    backend: str = "bigmodel"
    out: str = "runs"  # runs are written to OUT/NAME
    name: str | None = None  # default: MODEL-YYYYmmdd-HHMMSS
    resume: str | None = None  # a checkpoint path, or "latest"
    init_from: str | None = None
    compile: bool = False
    num_workers: int = 0
    nproc: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
# What may differ when resuming: everything else is the checkpoint's, so the run continues exactly.
RESUME_MAY_CHANGE = {"epochs", "max_steps", "device", "backend", "num_workers", "compile", "nproc", "resume", "out"}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml/.json) or TOML (.toml) config file into a dict of known keys."""
    path = Path(path)
    text = _io.read_text(path, "config file", ConfigError)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data = _io.parse_toml(text, path, ConfigError)
    elif suffix in (".yaml", ".yml", ".json"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]}"
                              f"{' at line ' + str(exc.problem_mark.line + 1) if getattr(exc, 'problem_mark', None) else ''})") from None
    else:
        raise ConfigError(f"{path}: unknown config format {suffix or '(no extension)'}; use .yaml, .yml or .toml")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of option names to values, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        if k in INFO_KEYS:
            continue
        if k not in FIELDS:
            raise ConfigError(f"{path}: unknown option {key!r}; known options: {', '.join(sorted(FIELDS))}")
        if k == "model_options" and value is not None and not isinstance(value, dict):
            raise ConfigError(f"{path}: model_options must be a mapping, got {value!r}")
        out[k] = value
    return out


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Coerce and check one value against the TrainConfig field's type."""
    if typing.get_origin(hint) is dict:
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"option {key!r} must be a mapping, got {value!r}")
        return dict(value or {})
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"option {key!r} cannot be empty")
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"option {key!r} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return int(value)
            raise ConfigError(f"option {key!r} must be an integer, got {value!r}")
        return value
    if base is float:
        return finite_float(value, f"option {key!r}")
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"option {key!r} must be a string, got {value!r}")
        return value
    return value


def _choice(key: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ConfigError(f"option {key!r} must be one of {', '.join(allowed)}, got {value!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    from ..models import BACKENDS, get_entry

    get_entry(cfg.model)
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("scheduler", cfg.scheduler, SCHEDULERS)
    _choice("device", cfg.device, DEVICES)
    _choice("backend", cfg.backend, BACKENDS)
    for key in ("epochs", "batch_size", "nproc"):
        v = getattr(cfg, key)
        if v is not None and v < 1:
            raise ConfigError(f"option {key!r} must be at least 1, got {v}")
    for key in ("max_steps", "limit", "seq_len", "step_epochs"):
        v = getattr(cfg, key)
        if v is not None and v < 1:
            raise ConfigError(f"option {key!r} must be at least 1 when given, got {v}")
    if cfg.num_workers < 0:
        raise ConfigError(f"option 'num_workers' must be 0 or more, got {cfg.num_workers}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise ConfigError(f"option 'lr' must be positive, got {cfg.lr}")
    if cfg.weight_decay is not None and cfg.weight_decay < 0:
        raise ConfigError(f"option 'weight_decay' must be 0 or more, got {cfg.weight_decay}")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"option 'momentum' must be in [0, 1), got {cfg.momentum}")
    if not 0 < cfg.gamma <= 1:
        raise ConfigError(f"option 'gamma' must be in (0, 1], got {cfg.gamma}")
    if cfg.resume is not None and cfg.init_from is not None:
        raise ConfigError("--resume continues a run and --init-from starts a new one from a checkpoint's weights; "
                          "give only one")
    if cfg.name is not None and (not cfg.name or "/" in cfg.name or cfg.name in (".", "..")):
        raise ConfigError(f"option 'name' must be a plain folder name, got {cfg.name!r}")
    return cfg


def make_config(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a dict of option values (types checked), with the model's defaults
    filled in for whatever is still unset."""
    from ..models import get_entry, model_config

    hints = typing.get_type_hints(TrainConfig)
    kwargs = {}
    for key, value in values.items():
        if key not in FIELDS:
            raise ConfigError(f"unknown option {key!r}")
        kwargs[key] = _check_type(key, value, hints[key])
    cfg = TrainConfig(**kwargs)
    entry = get_entry(cfg.model)
    for key, value in {"optimizer": "adam", "scheduler": "none", "weight_decay": 0.0, **entry.train_defaults}.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    cfg.model_options = model_config(cfg.model, cfg.model_options)
    return validate(cfg)


def resolve(overrides: dict[str, Any], config_file: str | os.PathLike | None = None) -> TrainConfig:
    """Merge a config file and explicit overrides (None values mean "not given") into a config.

    When resuming, the checkpoint's config is the base and only RESUME_MAY_CHANGE may differ.
    """
    values: dict[str, Any] = load_config_file(config_file) if config_file else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    opts = dict(values.get("model_options") or {})
    opts.update(given.pop("model_options", None) or {})
    values.update(given)
    if opts:
        values["model_options"] = opts
    resume = values.get("resume")
    if resume:
        from .checkpoint import load_checkpoint, resolve_resume_path

        path = resolve_resume_path(resume, values.get("out") or TrainConfig.out)
        base = dict(load_checkpoint(path)["train_config"])
        bad = [k for k, v in values.items()
               if k not in RESUME_MAY_CHANGE and v != base.get(k)
               and not (k == "model_options" and model_opts_equal(base["model"], v, base.get(k) or {}))]
        if bad:
            raise ConfigError(f"cannot change {', '.join(sorted(bad))} when resuming {path}: a resumed run continues "
                              "exactly as it started (use --init-from to start a new run from its weights)")
        base.update({k: v for k, v in values.items() if k in RESUME_MAY_CHANGE})
        base["resume"] = str(path)
        values = base
    values.setdefault("model", "cnn")
    return make_config(values)


def model_opts_equal(model: str, a: dict, b: dict) -> bool:
    from ..models import model_config

    try:
        return model_config(model, a) == model_config(model, b)
    except ConfigError:
        return False


def parse_model_options(items: list[str] | None) -> dict[str, Any]:
    """["channels=16,32", "dropout=0.1"] -> {"channels": "16,32", "dropout": "0.1"} (typed later)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-opt expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
