"""Model registry plumbing: hyper-parameter dataclasses filled from options, and entries by name."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..data.base import DataSpec
from ..errors import ConfigError


def _coerce(model: str, key: str, value: Any, hint: Any) -> Any:
    """Turn an option value (from a config file or a KEY=VALUE string) into the field's type."""
    origin = typing.get_origin(hint)
    what = f"model option {key!r} of {model}"
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v for v in value.replace("x", ",").split(",") if v.strip()]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{what} must be a non-empty list of {item.__name__}s, got {value!r}")
        return tuple(_coerce(model, key, v, item) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{what} must be an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{what} must be an integer, got {value!r}") from None
    if hint is float:
        return finite_float(value, what)
    return value


def finite_float(value: Any, what: str) -> float:
    """float(value) for a model or training option named `what`; booleans, non-numbers, NaN and
    infinities raise ConfigError. Numeric strings are accepted (options arrive as KEY=VALUE text)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(out):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return out


def make_config(name: str, cls: type, options: dict[str, Any] | None) -> Any:
    """cls(**options) with unknown keys rejected and values coerced to the fields' types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in (options or {}).items():
        k = key.replace("-", "_")
        if k not in fields:
            raise ConfigError(f"{name} has no model option {key!r}; its options are: {', '.join(sorted(fields))}")
        kwargs[k] = _coerce(name, key, value, hints[k])
    cfg = cls(**kwargs)
    check = getattr(cfg, "validate", None)
    if check is not None:
        check(name)
    return cfg


def positive(name: str, **values: Any) -> None:
    for k, v in values.items():
        vals = v if isinstance(v, tuple) else (v,)
        if any(x <= 0 for x in vals):
            raise ConfigError(f"{name}: model option {k!r} must be positive, got {v!r}")


def probability(name: str, **values: float) -> None:
    for k, v in values.items():
        if not 0.0 <= v < 1.0:
            raise ConfigError(f"{name}: model option {k!r} must be in [0, 1), got {v!r}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


@dataclass(frozen=True)
class ModelEntry:
    """A model in the zoo: its hyper-parameters, builder, what data it takes and its training defaults."""

    name: str
    summary: str
    config_cls: type
    build: Callable[[Any, DataSpec, Any], torch.nn.Module]
    kinds: tuple[str, ...]  # DataSpec.kind values it accepts
    tasks: tuple[str, ...]  # DataSpec.task values it accepts
    train_defaults: dict[str, Any] = field(default_factory=dict)


def token_embedding(spec: DataSpec, dim: int, L) -> torch.nn.Module | None:
    """The Embedding in front of a model's token inputs ((N, T) ids -> (N, T, dim)), with the
    dataset's padding id kept at zero; None for image inputs, which a model reads as they are."""
    if spec.kind != "tokens":
        return None
    return L.Embedding(spec.vocab_size, dim, padding_idx=spec.pad_index)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed encoding: pe[p, 2i] = sin(p / 10000^(2i/dim)), pe[p, 2i+1] = cos(same)."""
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(torch.float32)
