"""Drop-in modules: torch.nn's constructor arguments, attributes and state_dict keys, running on
bigmodel's kernels. `convert(model)` swaps a model's torch.nn layers for these, in place."""

from .convert import convert
from .pooling import AvgPool2d, MaxPool2d

__all__ = ["AvgPool2d", "MaxPool2d", "convert"]

from .attention import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer  # noqa: E402

__all__ += ["MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer"]
