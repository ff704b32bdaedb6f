"""Reference implementations: plain PyTorch, computed in float64, one per bigmodel op.

Tests, `bigmodel bench` and `--check` compare bigmodel's kernels against these. Each takes the
same arguments as the op it checks and returns float64 results (indices stay int64), so the
reference's own rounding error is far below the float32 kernels' tolerance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _f64(x: torch.Tensor) -> torch.Tensor:
    # Upcast, keeping the autograd graph so reference gradients can flow through.
    return x.to(torch.float64)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return F.max_pool2d(_f64(input), kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                        return_indices=return_indices)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return F.avg_pool2d(_f64(input), kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def matmul(input, other):
    return _f64(input) @ _f64(other)


def gemm(a, b, c=None, alpha=1.0, beta=0.0):
    """alpha * a @ b + beta * c in float64; beta == 0 ignores c entirely (NaN included), as addmm."""
    out = alpha * (_f64(a) @ _f64(b))
    if c is not None and beta != 0:
        out = out + beta * _f64(c)
    return out


def gemm_batch_reduce(a, b, c=None, alpha=1.0, beta=0.0):
    """alpha * sum_t a[t] @ b[t] + beta * c in float64."""
    out = alpha * (_f64(a) @ _f64(b)).sum(0) if a.shape[0] else torch.zeros(a.shape[1], b.shape[2], dtype=torch.float64)
    if c is not None and beta != 0:
        out = out + beta * _f64(c)
    return out


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(_f64(input), _f64(weight), None if bias is None else _f64(bias), stride, padding, dilation, groups)


def grads(fn, inputs: list[torch.Tensor], grad_output: torch.Tensor, **kwargs) -> list[torch.Tensor]:
    """Gradients of sum(fn(*inputs) * grad_output) w.r.t. `inputs`, in float64."""
    xs = [x.detach().to(torch.float64).requires_grad_(True) for x in inputs]
    out = fn(*xs, **kwargs)
    if isinstance(out, tuple):
        out = out[0]
    (out * grad_output.detach().to(torch.float64)).sum().backward()
    return [x.grad for x in xs]
