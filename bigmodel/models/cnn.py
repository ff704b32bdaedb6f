"""cnn: (conv -> ReLU -> 2x2 max-pool) per entry of `channels`, then two linear layers."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.base import DataSpec
from ..errors import ConfigError
from .base import positive, probability


@dataclass
class CNNConfig:
    channels: tuple[int, ...] = (16, 32)  # output channels of each conv block
    kernel_size: int = 5  # odd, padded to keep the size ("same" convolution)
    hidden: int = 128  # width of the first linear layer
    dropout: float = 0.25  # before the last linear layer

    def validate(self, name: str) -> None:
        positive(name, channels=self.channels, kernel_size=self.kernel_size, hidden=self.hidden)
        probability(name, dropout=self.dropout)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"{name}: model option 'kernel_size' must be odd, got {self.kernel_size}")


class CNN(torch.nn.Module):
    """(N, C, H, W) images -> (N, classes) logits."""

    def __init__(self, cfg: CNNConfig, spec: DataSpec, L):
        super().__init__()
        c, h, w = spec.input_shape
        blocks = []
        for out in cfg.channels:
            if h < 2 or w < 2:
                raise ConfigError(f"cnn: {len(cfg.channels)} conv blocks pool a {spec.input_shape[1]}x"
                                  f"{spec.input_shape[2]} image below 1x1; use fewer 'channels'")
            blocks += [L.Conv2d(c, out, cfg.kernel_size, padding=cfg.kernel_size // 2), L.ReLU(), L.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        self.features = torch.nn.Sequential(*blocks)
        self.classifier = torch.nn.Sequential(
            L.Flatten(), L.Linear(c * h * w, cfg.hidden), L.ReLU(), L.Dropout(cfg.dropout),
            L.Linear(cfg.hidden, spec.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(cfg: CNNConfig, spec: DataSpec, L) -> torch.nn.Module:
    return CNN(cfg, spec, L)
