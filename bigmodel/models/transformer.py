"""transformer: a ViT-style classifier (patch embedding, class token, sinusoidal positions, pre-norm
TransformerEncoderLayers) for images, or a mean-pooled encoder for token sequences.
transformer-lm: a causal character-level language model on the same layers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.base import DataSpec
from ..errors import ConfigError
from .base import positive, probability, sinusoidal_positions, token_embedding


@dataclass
class TransformerConfig:
    patch_size: int = 7  # images: square patches; must divide the image size
    dim: int = 64  # model width
    depth: int = 4  # encoder layers
    heads: int = 4
    mlp_dim: int = 128  # feed-forward width inside each layer
    dropout: float = 0.1

    def validate(self, name: str) -> None:
        positive(name, patch_size=self.patch_size, dim=self.dim, depth=self.depth, heads=self.heads,
                 mlp_dim=self.mlp_dim)
        probability(name, dropout=self.dropout)
        if self.dim % self.heads:
            raise ConfigError(f"{name}: model option 'dim' ({self.dim}) must be a multiple of 'heads' ({self.heads})")


@dataclass
class TransformerLMConfig:
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 512
    dropout: float = 0.1

    def validate(self, name: str) -> None:
        positive(name, dim=self.dim, depth=self.depth, heads=self.heads, mlp_dim=self.mlp_dim)
        probability(name, dropout=self.dropout)
        if self.dim % self.heads:
            raise ConfigError(f"{name}: model option 'dim' ({self.dim}) must be a multiple of 'heads' ({self.heads})")


def _encoder_layers(cfg, L) -> torch.nn.ModuleList:
    # One constructor call per layer (not nn.TransformerEncoder's deep copies), so each layer has
    # its own initial weights and both backends draw them in the same order.
    return torch.nn.ModuleList(
        L.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=cfg.mlp_dim, dropout=cfg.dropout,
                                  activation="gelu", batch_first=True, norm_first=True)
        for _ in range(cfg.depth)
    )


class VisionTransformer(torch.nn.Module):
    """(N, C, H, W) -> (N, classes); or (N, T) token ids -> (N, classes) with mean pooling."""

    def __init__(self, cfg: TransformerConfig, spec: DataSpec, L):
        super().__init__()
        self.kind = spec.kind
        self.pad_index = spec.pad_index
        self.scale = math.sqrt(cfg.dim)
        if spec.kind == "image":
            c, h, w = spec.input_shape
            p = cfg.patch_size
            if h % p or w % p:
                raise ConfigError(f"transformer: patch_size {p} must divide the image size {h}x{w}")
            self.patch_embed = L.Conv2d(c, cfg.dim, p, stride=p)
            self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, cfg.dim))
            torch.nn.init.normal_(self.cls_token, std=0.02)
            length = (h // p) * (w // p) + 1
        else:
            self.embed = token_embedding(spec, cfg.dim, L)
            length = spec.input_shape[0]
        self.register_buffer("positions", sinusoidal_positions(length, cfg.dim), persistent=False)
        self.dropout = L.Dropout(cfg.dropout)
        self.layers = _encoder_layers(cfg, L)
        self.norm = L.LayerNorm(cfg.dim)
        self.head = L.Linear(cfg.dim, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.kind == "image":
            t = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, patches, D)
            t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        else:
            t = self.embed(x) * self.scale
            if self.pad_index is not None:
                mask = x == self.pad_index  # True = ignore; sequences are left-padded,
                mask[:, -1] = False  # so the last step is real (and no row is fully masked)
        t = self.dropout(t + self.positions[: t.shape[1]])
        for layer in self.layers:
            t = layer(t, src_key_padding_mask=mask)
        t = self.norm(t)
        if self.kind == "image":
            pooled = t[:, 0]
        elif mask is not None:
            keep = (~mask).unsqueeze(-1).to(t.dtype)
            pooled = (t * keep).sum(1) / keep.sum(1)
        else:
            pooled = t.mean(1)
        return self.head(pooled)


class TransformerLM(torch.nn.Module):
    """(N, T) token ids -> (N, T, vocab) next-token logits, causal."""

    def __init__(self, cfg: TransformerLMConfig, spec: DataSpec, L):
        super().__init__()
        self.scale = math.sqrt(cfg.dim)
        self.embed = L.Embedding(spec.vocab_size, cfg.dim)
        self.register_buffer("positions", sinusoidal_positions(spec.input_shape[0], cfg.dim), persistent=False)
        self.dropout = L.Dropout(cfg.dropout)
        self.layers = _encoder_layers(cfg, L)
        self.norm = L.LayerNorm(cfg.dim)
        self.head = L.Linear(cfg.dim, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape
        if t > self.positions.shape[0]:
            raise ValueError(f"transformer-lm: sequences of {t} tokens exceed the model's context of "
                             f"{self.positions.shape[0]}")
        causal = torch.nn.Transformer.generate_square_subsequent_mask(t, device=x.device, dtype=torch.float32)
        h = self.dropout(self.embed(x) * self.scale + self.positions[:t])
        for layer in self.layers:
            h = layer(h, src_mask=causal, is_causal=True)
        return self.head(self.norm(h))


def build(cfg: TransformerConfig, spec: DataSpec, L) -> torch.nn.Module:
    return VisionTransformer(cfg, spec, L)


def build_lm(cfg: TransformerLMConfig, spec: DataSpec, L) -> torch.nn.Module:
    return TransformerLM(cfg, spec, L)
