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


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step of torch.nn.LSTMCell in float64, written out: gate order i, f, g, o."""
    x = _f64(input)
    if hx is None:
        z = torch.zeros(*x.shape[:-1], w_hh.shape[-1], dtype=torch.float64, device=x.device)
        hx = (z, z)
    h, c = _f64(hx[0]), _f64(hx[1])
    g = x @ _f64(w_ih).t() + h @ _f64(w_hh).t()
    if b_ih is not None:
        g = g + _f64(b_ih) + _f64(b_hh)
    i, f, gg, o = g.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def lstm(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, lengths=None):
    """One LSTM layer, one direction, over (T, B, I) in float64: (output, (h_n, c_n)).

    reverse visits steps T-1 .. 0. lengths (B,) makes row b run its first lengths[b] steps only
    (output zero after them, state carried), as bigmodel.ops.lstm.
    """
    x = _f64(input)
    T, B = x.shape[0], x.shape[1]
    H = w_hh.shape[-1]
    if hx is None:
        z = torch.zeros(B, H, dtype=torch.float64, device=x.device)
        hx = (z, z)
    h, c = _f64(hx[0]), _f64(hx[1])
    outs = [None] * T
    for s in range(T):
        t = T - 1 - s if reverse else s
        h_new, c_new = lstm_cell(x[t], (h, c), w_ih, w_hh, b_ih, b_hh)
        if lengths is not None:
            live = (lengths.to(x.device) > s).unsqueeze(1)
            h_new, c_new = torch.where(live, h_new, h), torch.where(live, c_new, c)
            outs[t] = torch.where(live, h_new, torch.zeros_like(h_new))
        else:
            outs[t] = h_new
        h, c = h_new, c_new
    out = torch.stack(outs) if T else torch.zeros(0, B, H, dtype=torch.float64, device=x.device)
    return out, (h, c)


def grads(fn, inputs: list[torch.Tensor], grad_output: torch.Tensor, **kwargs) -> list[torch.Tensor]:
    """Gradients of sum(fn(*inputs) * grad_output) w.r.t. `inputs`, in float64."""
    xs = [x.detach().to(torch.float64).requires_grad_(True) for x in inputs]
    out = fn(*xs, **kwargs)
    if isinstance(out, tuple):
        out = out[0]
    (out * grad_output.detach().to(torch.float64)).sum().backward()
    return [x.grad for x in xs]


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, dropout_mask=None):
    """softmax(Q K^T * scale + bias) V in float64, materialising the full score matrix.

    bigmodel's conventions: causal is top-left (key j visible to query i iff j <= i); a bool mask
    marks visible keys with True; a row that sees no key gives zeros. Dropout is applied only when
    `dropout_mask` (bool, broadcastable to (..., L, S), True = kept) is given: the kept
    probabilities are scaled by 1 / (1 - dropout_p).
    """
    import math

    q, k, v = _f64(query), _f64(key), _f64(value)
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(E) if E > 0 else 1.0
    if enable_gqa:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    visible = torch.ones(L, S, dtype=torch.bool, device=q.device)
    if is_causal:
        visible = visible.tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            visible = visible & attn_mask
        else:
            scores = scores + _f64(attn_mask)
    scores = scores.masked_fill(~visible, float("-inf"))
    seen = (scores > float("-inf")).any(dim=-1, keepdim=True)
    probs = torch.softmax(scores.masked_fill(~seen, 0.0), dim=-1) * seen
    if dropout_mask is not None:
        keep = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
        probs = probs * dropout_mask.to(probs.dtype) * keep
    return torch.matmul(probs, v)
