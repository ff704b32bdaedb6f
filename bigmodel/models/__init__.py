"""The model zoo, by name. Every layer is looked up by its torch.nn name for the chosen backend
(see layers.py): with backend "bigmodel" it comes from bigmodel.nn where bigmodel.nn has it.

    cnn              conv -> ReLU -> max-pool (x2), then two linear layers; 1x28x28 images
    lstm             reads an image row by row, or token embeddings; stacked/bidirectional, dropout
    transformer      ViT-style image classifier (or a mean-pooled text encoder)
    transformer-lm   causal character-level language model
    mlp              the baseline
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.base import DataSpec
from ..errors import ConfigError
from . import cnn, lstm, mlp, transformer
from .base import ModelEntry, config_to_dict, make_config
from .layers import BACKENDS, KERNEL_LAYERS, Layers, check_backend, layer_report

MODELS: dict[str, ModelEntry] = {
    "cnn": ModelEntry(
        "cnn", "conv-ReLU-maxpool x2 + two linear layers (images)", cnn.CNNConfig, cnn.build,
        kinds=("image",), tasks=("classify",),
        train_defaults=dict(epochs=8, batch_size=64, lr=1e-3, optimizer="adam", scheduler="cosine"),
    ),
    "lstm": ModelEntry(
        "lstm", "LSTM over image rows or token embeddings", lstm.LSTMConfig, lstm.build,
        kinds=("image", "tokens"), tasks=("classify", "lm"),
        train_defaults=dict(epochs=12, batch_size=64, lr=2e-3, optimizer="adam", scheduler="cosine"),
    ),
    "transformer": ModelEntry(
        "transformer", "ViT-style encoder classifier (images or tokens)", transformer.TransformerConfig,
        transformer.build, kinds=("image", "tokens"), tasks=("classify",),
        train_defaults=dict(epochs=30, batch_size=64, lr=1e-3, optimizer="adamw", weight_decay=0.05,
                            scheduler="cosine"),
    ),
    "transformer-lm": ModelEntry(
        "transformer-lm", "causal character-level language model (text)", transformer.TransformerLMConfig,
        transformer.build_lm, kinds=("tokens",), tasks=("lm",),
        train_defaults=dict(epochs=10, batch_size=32, lr=1e-3, optimizer="adamw", weight_decay=0.01,
                            scheduler="cosine"),
    ),
    "mlp": ModelEntry(
        "mlp", "multi-layer perceptron baseline", mlp.MLPConfig, mlp.build,
        kinds=("image", "tokens"), tasks=("classify",),
        train_defaults=dict(epochs=10, batch_size=64, lr=1e-3, optimizer="adam", scheduler="cosine"),
    ),
}


def get_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def model_config(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model's full hyper-parameters: its defaults updated with `options` (validated)."""
    entry = get_entry(name)
    return config_to_dict(make_config(name, entry.config_cls, options))


def build_model(name: str, spec: DataSpec, options: dict[str, Any] | None = None,
                backend: str = "bigmodel") -> torch.nn.Module:
    """Build model `name` for data of `spec` from `backend`'s layers (initialised from torch's
    current RNG state: seed first for reproducible weights)."""
    entry = get_entry(name)
    if spec.kind not in entry.kinds or spec.task not in entry.tasks:
        what = {"image": "images", "tokens": "token sequences"}.get(spec.kind, spec.kind)
        task = {"classify": "classification", "lm": "language modelling"}.get(spec.task, spec.task)
        fits = [n for n, e in MODELS.items() if spec.kind in e.kinds and spec.task in e.tasks]
        raise ConfigError(f"model {name!r} does not do {task} of {what}; models that do: {', '.join(fits)}")
    cfg = make_config(name, entry.config_cls, options)
    return entry.build(cfg, spec, Layers(backend))


__all__ = ["BACKENDS", "KERNEL_LAYERS", "MODELS", "Layers", "ModelEntry", "build_model", "check_backend", "get_entry",
           "layer_report", "model_config"]
