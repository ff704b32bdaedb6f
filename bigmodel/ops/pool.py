"""max_pool2d and avg_pool2d: torch.nn.functional's signatures on bigmodel's kernels."""

from __future__ import annotations

import torch

from ._common import empty_like_layout, pair

_ops = torch.ops.bigmodel


def max_pool2d(
    input: torch.Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """2-D max pooling over (N, C, H, W) or (C, H, W) input, as torch.nn.functional.max_pool2d.

    With return_indices=True also returns torch's indices (ih * W + iw within each plane).
    NaN propagates and among equal maxima the first in row-major window order wins, as in torch.
    """
    op = "max_pool2d"
    k = pair(op, "kernel_size", kernel_size)
    s = pair(op, "stride", stride, allow_none=True) or []
    p = pair(op, "padding", padding)
    d = pair(op, "dilation", dilation)
    if return_indices:
        return _ops.max_pool2d_with_indices(input, k, s, p, d, bool(ceil_mode))
    return _ops.max_pool2d(input, k, s, p, d, bool(ceil_mode))


def avg_pool2d(
    input: torch.Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
):
    """2-D average pooling over (N, C, H, W) or (C, H, W) input, as torch.nn.functional.avg_pool2d."""
    op = "avg_pool2d"
    k = pair(op, "kernel_size", kernel_size)
    s = pair(op, "stride", stride, allow_none=True) or []
    p = pair(op, "padding", padding)
    if divisor_override is not None and (isinstance(divisor_override, bool) or not isinstance(divisor_override, int)):
        raise TypeError(f"{op}: divisor_override must be an int or None, got {divisor_override!r}")
    return _ops.avg_pool2d(input, k, s, p, bool(ceil_mode), bool(count_include_pad), divisor_override)


# ---- shapes for torch.compile / meta tensors ------------------------------------------------


def _out_size(size, k, s, p, d, ceil_mode):
    """torch's pooling output length (mirrors bigmodel::pool_output_size in C++)."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out = out - 1
    return out


def _out_shape(x, kernel_size, stride, padding, dilation, ceil_mode):
    k, p, d = list(kernel_size), list(padding), list(dilation)
    s = list(stride) if len(stride) else k
    k, s, p, d = ([v[0], v[-1]] for v in (k, s, p, d))
    h = _out_size(x.shape[-2], k[0], s[0], p[0], d[0], ceil_mode)
    w = _out_size(x.shape[-1], k[1], s[1], p[1], d[1], ceil_mode)
    return [*x.shape[:-2], h, w]


@torch.library.register_fake("bigmodel::max_pool2d")
def _max_pool2d_fake(x, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    return empty_like_layout(x, _out_shape(x, kernel_size, stride, padding, dilation, ceil_mode))


@torch.library.register_fake("bigmodel::max_pool2d_with_indices")
def _max_pool2d_with_indices_fake(x, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    shape = _out_shape(x, kernel_size, stride, padding, dilation, ceil_mode)
    return empty_like_layout(x, shape), empty_like_layout(x, shape, dtype=torch.int64)


@torch.library.register_fake("bigmodel::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode):
    return empty_like_layout(x, list(x.shape))


@torch.library.register_fake("bigmodel::avg_pool2d")
def _avg_pool2d_fake(x, kernel_size, stride=(), padding=(0,), ceil_mode=False, count_include_pad=True,
                     divisor_override=None):
    return empty_like_layout(x, _out_shape(x, kernel_size, stride, padding, [1], ceil_mode))


@torch.library.register_fake("bigmodel::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override):
    return empty_like_layout(x, list(x.shape))


# ---- autograd --------------------------------------------------------------------------------
# max: the backward op recomputes each window's argmax from the saved input, so the forward
# never has to write indices. avg: the backward needs only the input's shape, but the op takes
# the input itself (it is already alive in any graph that pools it).


def _max_setup(ctx, inputs, output):
    x, kernel_size, stride, padding, dilation, ceil_mode = inputs
    ctx.save_for_backward(x)
    ctx.args = (kernel_size, stride if len(stride) else kernel_size, padding, dilation, ceil_mode)


def _max_backward(ctx, grad, *unused):
    (x,) = ctx.saved_tensors
    gx = _ops.max_pool2d_backward(grad, x, *ctx.args) if ctx.needs_input_grad[0] else None
    return gx, None, None, None, None, None


torch.library.register_autograd("bigmodel::max_pool2d", _max_backward, setup_context=_max_setup)
torch.library.register_autograd("bigmodel::max_pool2d_with_indices", _max_backward, setup_context=_max_setup)


def _max_bwd_setup(ctx, inputs, output):
    _, x, kernel_size, stride, padding, dilation, ceil_mode = inputs
    ctx.save_for_backward(x)
    ctx.args = (kernel_size, stride, padding, dilation, ceil_mode)


def _max_bwd_backward(ctx, gg):
    # grad_input = scatter(grad_output at each window's argmax): linear in grad_output, so its
    # own gradient gathers gg at the same argmax positions; piecewise constant in the input.
    (x,) = ctx.saved_tensors
    ggo = None
    if ctx.needs_input_grad[0]:
        _, idx = _ops.max_pool2d_with_indices(x, *ctx.args)
        ggo = gg.flatten(-2).gather(-1, idx.flatten(-2)).view_as(idx)
    return ggo, None, None, None, None, None, None


torch.library.register_autograd("bigmodel::max_pool2d_backward", _max_bwd_backward, setup_context=_max_bwd_setup)


def _avg_setup(ctx, inputs, output):
    x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override = inputs
    ctx.save_for_backward(x)
    ctx.args = (kernel_size, stride if len(stride) else kernel_size, padding, ceil_mode, count_include_pad,
                divisor_override)


def _avg_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    gx = _ops.avg_pool2d_backward(grad, x, *ctx.args) if ctx.needs_input_grad[0] else None
    return gx, None, None, None, None, None, None


torch.library.register_autograd("bigmodel::avg_pool2d", _avg_backward, setup_context=_avg_setup)


def _avg_bwd_setup(ctx, inputs, output):
    _, x, *args = inputs
    ctx.save_for_backward(x)
    ctx.args = tuple(args)


def _avg_bwd_backward(ctx, gg):
    # avg_pool2d_backward is the adjoint of the (linear) forward, so its gradient is the forward.
    (x,) = ctx.saved_tensors
    ggo = _ops.avg_pool2d(gg, *ctx.args) if ctx.needs_input_grad[0] else None
    return ggo, None, None, None, None, None, None, None


torch.library.register_autograd("bigmodel::avg_pool2d_backward", _avg_bwd_backward, setup_context=_avg_bwd_setup)
