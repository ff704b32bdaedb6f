"""mlp: the baseline. Images are flattened; token sequences are averaged embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.base import DataSpec
from .base import positive, probability, token_embedding


@dataclass
class MLPConfig:
    hidden: tuple[int, ...] = (256, 128)  # widths of the hidden layers
    dropout: float = 0.1
    embed_dim: int = 64  # token inputs only

    def validate(self, name: str) -> None:
        positive(name, hidden=self.hidden, embed_dim=self.embed_dim)
        probability(name, dropout=self.dropout)


class MLP(torch.nn.Module):
    def __init__(self, cfg: MLPConfig, spec: DataSpec, L):
        super().__init__()
        self.pad_index = spec.pad_index
        self.embed = token_embedding(spec, cfg.embed_dim, L)
        width = cfg.embed_dim if self.embed is not None else math.prod(spec.input_shape)  # images: flattened
        layers = [] if self.embed is not None else [L.Flatten()]
        for h in cfg.hidden:
            layers += [L.Linear(width, h), L.ReLU(), L.Dropout(cfg.dropout)]
            width = h
        layers.append(L.Linear(width, spec.num_classes))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            e = self.embed(x)  # (N, T, E)
            if self.pad_index is not None:
                keep = (x != self.pad_index).unsqueeze(-1).to(e.dtype)
                x = (e * keep).sum(1) / keep.sum(1).clamp_min(1.0)
            else:
                x = e.mean(1)
        return self.net(x)


def build(cfg: MLPConfig, spec: DataSpec, L) -> torch.nn.Module:
    return MLP(cfg, spec, L)
