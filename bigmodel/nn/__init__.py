"""Drop-in modules: torch.nn's constructor arguments, attributes and state_dict keys, running on
bigmodel's kernels. `convert(model)` swaps a model's torch.nn layers for these, in place."""

from .attention import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer
from .conv import Conv2d
from .convert import convert
from .pooling import AvgPool2d, MaxPool2d
from .rnn import LSTM, LSTMCell

__all__ = ["AvgPool2d", "Conv2d", "LSTM", "LSTMCell", "MaxPool2d", "MultiheadAttention", "TransformerEncoder",
           "TransformerEncoderLayer", "convert"]
