"""conv2d: torch.nn.functional.conv2d's signature on bigmodel's kernels."""

from __future__ import annotations

import numbers

import torch

from ._common import empty_like_layout, pair

_ops = torch.ops.bigmodel


def _same_padding(op: str, weight, stride, dilation) -> list[int]:
    """torch's padding='same': total d*(k-1) per dimension, the odd one out on the bottom/right."""
    if any(s != 1 for s in stride):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride={tuple(stride)})")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        return [0, 0]  # the op reports the bad weight
    pads = []
    for k, d in zip(weight.shape[-2:], dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    if top == bottom and left == right:
        return [top, left]
    return [top, bottom, left, right]


def _padding(op: str, padding, weight, stride, dilation) -> list[int]:
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0]
        if padding == "same":
            return _same_padding(op, weight, stride, dilation)
        raise ValueError(f"{op}: padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    return pair(op, "padding", padding)


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution over (N, C, H, W) or (C, H, W) input, as torch.nn.functional.conv2d.

    `padding` is an int, a pair, 'valid' or 'same' (stride 1 only; with an even dilated kernel
    the extra row / column goes at the bottom / right, as in torch). Any groups, depthwise
    included. The output keeps the input's memory format (NCHW or channels_last).
    """
    op = "conv2d"
    s = pair(op, "stride", stride)
    d = pair(op, "dilation", dilation)
    p = _padding(op, padding, weight, s, d)
    if isinstance(groups, bool) or not isinstance(groups, (numbers.Integral, torch.SymInt)):
        raise TypeError(f"{op}: groups must be an int, got {type(groups).__name__}: {groups!r}")
    return _ops.conv2d(input, weight, bias, s, p, d, groups)


# ---- shapes for torch.compile / meta tensors ------------------------------------------------


def _pads(padding):
    """[p] / [pH, pW] / [top, bottom, left, right] -> (top, bottom, left, right)."""
    p = list(padding)
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    ph, pw = p[0], p[-1]
    return ph, ph, pw, pw


def _out_shape(x, weight, stride, padding, dilation):
    top, bottom, left, right = _pads(padding)
    (sh, sw), (dh, dw) = ([v[0], v[-1]] for v in (stride, dilation))
    kh, kw = weight.shape[-2], weight.shape[-1]
    oh = (x.shape[-2] + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[-1] + left + right - dw * (kw - 1) - 1) // sw + 1
    return [*x.shape[:-3], weight.shape[0], oh, ow]


@torch.library.register_fake("bigmodel::conv2d")
def _conv2d_fake(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return empty_like_layout(x, _out_shape(x, weight, stride, padding, dilation))


@torch.library.register_fake("bigmodel::conv2d_backward_input")
def _conv2d_backward_input_fake(grad_output, x, weight, stride, padding, dilation, groups):
    return empty_like_layout(x, list(x.shape))


@torch.library.register_fake("bigmodel::conv2d_backward_weight")
def _conv2d_backward_weight_fake(grad_output, x, weight, stride, padding, dilation, groups, bias_grad):
    gw = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
    gb = torch.empty((weight.shape[0] if bias_grad else 0,), dtype=weight.dtype, device=weight.device)
    return gw, gb


# ---- autograd --------------------------------------------------------------------------------
# out = conv(x, w) + b is bilinear in (x, w), so every gradient is another convolution:
#   grad_x = conv2d_backward_input(g, w)     grad_w, grad_b = conv2d_backward_weight(g, x)
# and the backward ops' own gradients (double backward) follow from
#   <gx, backward_input(g, w)> = <conv2d(gx, w), g>     <gw, backward_weight(g, x)> = <conv2d(x, gw), g>.


def _conv_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.args = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]
    gx = _ops.conv2d_backward_input(grad, x, weight, *ctx.args) if need_x else None
    gw = gb = None
    if need_w or need_b:
        gw, gb = _ops.conv2d_backward_weight(grad, x, weight, *ctx.args, need_b)
        gw = gw if need_w else None
        gb = gb if need_b else None
    return gx, gw, gb, None, None, None, None


torch.library.register_autograd("bigmodel::conv2d", _conv_backward, setup_context=_conv_setup)


def _bwd_input_setup(ctx, inputs, output):
    grad_output, x, weight, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(grad_output, x, weight)
    ctx.args = (stride, padding, dilation, groups)


def _bwd_input_backward(ctx, gg):
    # grad_input = B(g, w) is linear in g and in w; x only gives the shape.
    grad_output, x, weight = ctx.saved_tensors
    g_go = g_w = None
    if ctx.needs_input_grad[0]:
        g_go = _ops.conv2d(gg, weight, None, *ctx.args)
    if ctx.needs_input_grad[2]:
        g_w = _ops.conv2d_backward_weight(grad_output, gg, weight, *ctx.args, False)[0]
    return g_go, None, g_w, None, None, None, None


torch.library.register_autograd("bigmodel::conv2d_backward_input", _bwd_input_backward, setup_context=_bwd_input_setup)


def _bwd_weight_setup(ctx, inputs, output):
    grad_output, x, weight, stride, padding, dilation, groups, bias_grad = inputs
    ctx.save_for_backward(grad_output, x, weight)
    ctx.args = (stride, padding, dilation, groups)
    ctx.bias_grad = bias_grad


def _bwd_weight_backward(ctx, gg_weight, gg_bias):
    # (grad_weight, grad_bias) = (BW(g, x), sum(g)): linear in g and in x; w only gives the shape.
    grad_output, x, weight = ctx.saved_tensors
    if gg_weight is None:
        gg_weight = torch.zeros_like(weight)
    bias = gg_bias if ctx.bias_grad and gg_bias is not None and gg_bias.numel() > 0 else None
    g_go = g_x = None
    if ctx.needs_input_grad[0]:
        g_go = _ops.conv2d(x, gg_weight, bias, *ctx.args)
    if ctx.needs_input_grad[1]:
        g_x = _ops.conv2d_backward_input(grad_output, x, gg_weight, *ctx.args)
    return g_go, g_x, None, None, None, None, None, None


torch.library.register_autograd("bigmodel::conv2d_backward_weight", _bwd_weight_backward,
                                setup_context=_bwd_weight_setup)
