"""What every dataset gives the engine: in-memory splits that are indexed by a whole batch of
indices at once, and a DataSpec that tells a model what its inputs and outputs look like."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

# MNIST's pixel mean and standard deviation (of x / 255), the usual normalisation.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass(frozen=True)
class DataSpec:
    """The shape of a task, as a model needs it.

    kind: "image" (float (N, C, H, W) inputs) or "tokens" (int64 (N, T) token ids).
    task: "classify" (targets (N,) class ids) or "lm" (targets (N, T): the next token at each step).
    input_shape: one example's shape, (C, H, W) or (T,).
    num_classes: classes for "classify", vocabulary size for "lm".
    vocab_size: number of token ids (tokens only); pad_index: the id used for padding, if any.
    """

    kind: str
    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    vocab_size: int = 0
    pad_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)


class TensorSplit(torch.utils.data.Dataset):
    """One split held in memory. `split[indices]` returns a whole batch (inputs, targets).

    Images are kept as uint8 and normalised per batch, so full MNIST costs 47 MB, not 188 MB.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, normalize: tuple[float, float] | None = None):
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs ({inputs.shape[0]}) and targets ({targets.shape[0]}) differ in length")
        self.inputs = inputs
        self.targets = targets
        self.normalize = normalize

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(index, torch.Tensor):
            index = torch.as_tensor(index, dtype=torch.long)
        x, y = self.inputs[index], self.targets[index]
        if self.normalize is not None:
            mean, std = self.normalize
            x = (x.to(torch.float32) * (1.0 / 255.0) - mean) * (1.0 / std)
        return x, y

    def subset(self, index: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.inputs[index], self.targets[index], self.normalize)


@dataclass
class DataBundle:
    """A dataset, loaded: its splits ("train", "val", maybe "test"), spec, and what a checkpoint
    must remember to rebuild it (class names, vocabulary, source)."""

    name: str
    spec: DataSpec
    splits: dict[str, TensorSplit]
    classes: list[str] | None = None
    vocab: list[str] | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> TensorSplit:
        if name not in self.splits:
            from ..errors import DataError

            raise DataError(f"dataset {self.name!r} has no {name!r} split (it has: {', '.join(self.splits)})")
        return self.splits[name]


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (keep, held_out) with `fraction` of every class held out.

    Deterministic for a given seed, independent of the training seed, so the validation set is
    the same in every run. Both index lists are sorted.
    """
    g = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_held = int(round(idx.numel() * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def limit_split(split: TensorSplit, limit: int | None, seed: int = 0) -> TensorSplit:
    """The first `limit` examples of a fixed shuffle of `split` (all of it if limit is None)."""
    if limit is None or limit >= len(split):
        return split
    g = torch.Generator().manual_seed(seed)
    return split.subset(torch.randperm(len(split), generator=g)[:limit].sort().values)

