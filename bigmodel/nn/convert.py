"""convert(model): replace torch.nn layers with bigmodel's, in place, keeping weights."""

from __future__ import annotations

import torch

from .attention import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer
from .conv import Conv2d
from .pooling import AvgPool2d, MaxPool2d
from .rnn import LSTM, LSTMCell

# torch.nn class -> ours. Ours subclass theirs with the same attributes, so a layer is swapped by
# building ours from its constructor arguments and moving the state (parameters, buffers,
# training flag, hooks) across.
_SWAPS: dict[type, type] = {
    torch.nn.MaxPool2d: MaxPool2d,
    torch.nn.AvgPool2d: AvgPool2d,
    torch.nn.Conv2d: Conv2d,
    torch.nn.LSTM: LSTM,
    torch.nn.LSTMCell: LSTMCell,
    torch.nn.MultiheadAttention: MultiheadAttention,
    torch.nn.TransformerEncoderLayer: TransformerEncoderLayer,
    # TransformerEncoder too, so that its nested-tensor fast path (which would skip the layers'
    # forward, and our kernels with it) is never taken.
    torch.nn.TransformerEncoder: TransformerEncoder,
}


def _swap(module: torch.nn.Module) -> torch.nn.Module:
    ours = _SWAPS.get(type(module))  # exact type: subclasses of torch.nn layers may change forward
    if ours is None:
        return module
    supports = getattr(ours, "supports", None)  # optional: configurations ours cannot run stay torch's
    if supports is not None and not supports(module):
        return module
    new = ours.__new__(ours)
    new.__dict__ = module.__dict__  # same attributes, parameters, buffers, hooks
    return new


def convert(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every supported torch.nn layer in `model` (recursively) for its bigmodel twin, in place.

    Weights and buffers are kept (the very same Parameter objects), so optimizers built before
    the call keep working. Returns the model (or the swapped layer, if `model` itself is one).
    """
    for name, child in list(model.named_children()):
        swapped = _swap(child)
        if swapped is not child:
            setattr(model, name, swapped)
        convert(swapped)
    return _swap(model)
