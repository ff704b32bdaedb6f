"""lstm: a sequence model. Images are read row by row (28 steps of 28 pixels for MNIST); text is
read as token embeddings. Classifies from the last step (and, bidirectional, the backward
direction's first step), or predicts the next token at every step for language modelling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.base import DataSpec
from ..errors import ConfigError
from .base import positive, probability, token_embedding


@dataclass
class LSTMConfig:
    hidden: int = 128
    layers: int = 1  # stacked LSTM layers
    bidirectional: bool = False
    dropout: float = 0.0  # between stacked layers and before the output layer
    embed_dim: int = 64  # token inputs only

    def validate(self, name: str) -> None:
        positive(name, hidden=self.hidden, layers=self.layers, embed_dim=self.embed_dim)
        probability(name, dropout=self.dropout)


class LSTMModel(torch.nn.Module):
    def __init__(self, cfg: LSTMConfig, spec: DataSpec, L):
        super().__init__()
        if spec.task == "lm" and cfg.bidirectional:
            raise ConfigError("lstm: a bidirectional LSTM would see the tokens it must predict; "
                              "use bidirectional=false for language modelling")
        self.task = spec.task
        self.hidden = cfg.hidden
        self.bidirectional = cfg.bidirectional
        self.embed = token_embedding(spec, cfg.embed_dim, L)
        # images: one step per row, of C * W features
        features = cfg.embed_dim if self.embed is not None else spec.input_shape[0] * spec.input_shape[2]
        self.lstm = L.LSTM(features, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                           dropout=cfg.dropout if cfg.layers > 1 else 0.0, bidirectional=cfg.bidirectional)
        self.dropout = L.Dropout(cfg.dropout)
        self.head = L.Linear(cfg.hidden * (2 if cfg.bidirectional else 1), spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)  # (N, T, E)
        else:
            n, c, h, w = x.shape
            x = x.permute(0, 2, 1, 3).reshape(n, h, c * w)  # (N, H rows, C*W)
        out, _ = self.lstm(x)  # (N, T, H * directions)
        if self.task == "lm":
            return self.head(self.dropout(out))
        last = out[:, -1, : self.hidden]
        if self.bidirectional:
            last = torch.cat([last, out[:, 0, self.hidden :]], dim=1)
        return self.head(self.dropout(last))


def build(cfg: LSTMConfig, spec: DataSpec, L) -> torch.nn.Module:
    return LSTMModel(cfg, spec, L)
