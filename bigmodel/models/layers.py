"""Layer look-up by name for a backend.

`Layers("bigmodel").Conv2d(...)` builds bigmodel.nn.Conv2d when bigmodel.nn has it and
torch.nn.Conv2d otherwise; `Layers("torch")` always builds torch.nn's. Models ask for every layer
this way, so a kernel family that lands in bigmodel.nn is picked up with no change to the models.
Because bigmodel.nn's modules subclass their torch.nn twins (same constructor, same parameter
creation order), one seed gives the same initial weights on both backends and state_dicts load
across.
"""

from __future__ import annotations

from typing import Any

import torch

BACKENDS = ("bigmodel", "torch")

# Layer families that bigmodel implements with its own kernels (see DESIGN.md). With
# --backend bigmodel, one of these built from torch.nn is a fallback worth telling the user about;
# Linear, ReLU, LayerNorm, Embedding, Dropout ... are torch.nn by design.
KERNEL_LAYERS = ("Conv2d", "MaxPool2d", "AvgPool2d", "LSTM", "LSTMCell", "MultiheadAttention",
                 "TransformerEncoderLayer")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        from ..errors import ConfigError

        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


class Layers:
    """Attribute access by torch.nn class name returns the class to use for this backend."""

    def __init__(self, backend: str = "bigmodel"):
        self.backend = check_backend(backend)

    def get(self, name: str) -> type:
        if self.backend == "bigmodel":
            import bigmodel.nn as bnn

            cls = getattr(bnn, name, None)
            if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
                return cls
        cls = getattr(torch.nn, name, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise AttributeError(f"neither bigmodel.nn nor torch.nn has a layer named {name!r}")
        return cls

    def __getattr__(self, name: str) -> Any:
        if name[:1].isupper():
            return self.get(name)
        raise AttributeError(name)


def _is_bigmodel(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("bigmodel.nn")


def layer_report(model: torch.nn.Module, backend: str) -> dict[str, list[str]]:
    """Which layer classes the built model really uses, by where they come from.

    bigmodel: classes from bigmodel.nn; torch: classes from torch.nn; fallback (only for backend
    "bigmodel"): kernel-family layers that still came from torch.nn because bigmodel.nn lacks them.
    Layers nested inside others (the MultiheadAttention of a TransformerEncoderLayer) are counted.
    """
    ours, theirs = set(), set()
    for m in model.modules():
        mod = type(m).__module__
        if _is_bigmodel(m):
            ours.add(type(m).__name__)
        elif mod.startswith("torch.nn") and not mod.startswith("torch.nn.modules.container"):
            theirs.add(type(m).__name__)
    fallback = sorted(n for n in theirs if n in KERNEL_LAYERS) if backend == "bigmodel" else []
    return {"bigmodel": sorted(ours), "torch": sorted(theirs), "fallback": fallback}
