"""Functional ops on bigmodel's kernels, with torch.nn.functional's signatures.

Each is also reachable as torch.ops.bigmodel.<name>; this module adds argument handling, the
fake (shape) functions that torch.compile traces with, and the autograd formulas, whose
backward passes are registered ops of their own.
"""

from .gemm import gemm, gemm_batch_reduce, gemm_pack, gemm_prepacked, matmul
from .pool import avg_pool2d, max_pool2d

__all__ = ["avg_pool2d", "gemm", "gemm_batch_reduce", "gemm_pack", "gemm_prepacked", "matmul", "max_pool2d"]

from .attention import scaled_dot_product_attention  # noqa: E402

__all__ += ["scaled_dot_product_attention"]
