"""Functional ops on bigmodel's kernels, with torch.nn.functional's signatures.

Each is also reachable as torch.ops.bigmodel.<name>; this module adds argument handling, the
fake (shape) functions that torch.compile traces with, and the autograd formulas, whose
backward passes are registered ops of their own.
"""

from .attention import scaled_dot_product_attention
from .conv import conv2d
from .gemm import gemm, gemm_batch_reduce, gemm_pack, gemm_prepacked, matmul
from .lstm import lstm, lstm_cell
from .pool import avg_pool2d, max_pool2d

__all__ = ["avg_pool2d", "conv2d", "gemm", "gemm_batch_reduce", "gemm_pack", "gemm_prepacked", "lstm", "lstm_cell",
           "matmul", "max_pool2d", "scaled_dot_product_attention"]
