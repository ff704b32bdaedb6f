"""scaled_dot_product_attention: torch.nn.functional's signature on bigmodel's fused kernels.

The forward op writes the output and one logsumexp per query row; the backward op recomputes
the attention probabilities block by block from them, so no L x S matrix is ever stored.
"""

from __future__ import annotations

import numbers

import torch

_ops = torch.ops.bigmodel

_OP = "scaled_dot_product_attention"


def _check_args(attn_mask, dropout_p, is_causal, scale, enable_gqa) -> None:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, numbers.Real):
        raise TypeError(f"{_OP}: dropout_p must be a float, got {type(dropout_p).__name__}: {dropout_p!r}")
    if not isinstance(is_causal, bool):
        raise TypeError(f"{_OP}: is_causal must be a bool, got {type(is_causal).__name__}: {is_causal!r}")
    if not isinstance(enable_gqa, bool):
        raise TypeError(f"{_OP}: enable_gqa must be a bool, got {type(enable_gqa).__name__}: {enable_gqa!r}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
        raise TypeError(f"{_OP}: scale must be a float or None, got {type(scale).__name__}: {scale!r}")
    if attn_mask is not None and not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"{_OP}: attn_mask must be a tensor or None, got {type(attn_mask).__name__}")
    if (attn_mask is not None and attn_mask.requires_grad and torch.is_grad_enabled()):
        raise NotImplementedError(
            f"{_OP}: gradients with respect to attn_mask are not supported (the kernels never store the "
            "L x S gradient a float mask would need); pass attn_mask.detach()")


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """softmax(query @ key^T * scale + bias) @ value, as torch.nn.functional.scaled_dot_product_attention.

    Shapes (..., L, E), (..., S, E), (..., S, Ev) -> (..., L, Ev); batch dimensions broadcast. With
    enable_gqa=True dimension -3 holds the heads and key/value may have fewer of them (a divisor
    of the query's). attn_mask is bool (True = may attend) or additive float of the query's dtype,
    broadcastable to (..., L, S). is_causal masks key j for query i when j > i (torch's top-left
    convention, also when L != S); it can be combined with attn_mask.

    bigmodel's choices where torch leaves room:
      - a query row that can see no key at all gives zeros (never NaN), and zero gradients;
      - dropout (applied whenever dropout_p > 0, as in torch's functional) uses a seed drawn from
        torch's default CPU generator, so torch.manual_seed makes it reproducible; the mask is a
        hash of (seed, position) that the backward regenerates, so the gradient is exactly that
        of the forward's dropped-out attention;
      - attn_mask cannot require grad (NotImplementedError).
    """
    _check_args(attn_mask, dropout_p, is_causal, scale, enable_gqa)
    return _ops.scaled_dot_product_attention(query, key, value, attn_mask, float(dropout_p), is_causal,
                                             scale=None if scale is None else float(scale), enable_gqa=enable_gqa)


def draw_dropout_seed() -> torch.Tensor:
    """A fresh dropout seed (0-dim int64 CPU tensor) from torch's default generator."""
    return torch.randint(0, 2**63 - 1, (), dtype=torch.int64)


def scaled_dot_product_attention_with_seed(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                                           dropout_seed: torch.Tensor | None):
    """scaled_dot_product_attention with an explicit dropout seed (see dropout_keep_mask)."""
    _check_args(attn_mask, dropout_p, is_causal, scale, enable_gqa)
    out, _ = _ops.scaled_dot_product_attention_forward(query, key, value, attn_mask, float(dropout_p), is_causal,
                                                       None if scale is None else float(scale), enable_gqa,
                                                       dropout_seed)
    return out


def dropout_keep_mask(dropout_seed: torch.Tensor, batch_heads: int, L: int, S: int, dropout_p: float) -> torch.Tensor:
    """The (batch_heads, L, S) bool mask of kept attention probabilities that the kernels (CPU and
    CUDA alike) use for this seed; batch_heads counts (batch, query head) pairs in row-major order."""
    return _ops.attention_dropout_mask(dropout_seed, batch_heads, L, S, float(dropout_p))


# ---- shapes for torch.compile / meta tensors ------------------------------------------------


def _batch_shapes(q, k, v, enable_gqa):
    if enable_gqa:
        outer = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
        return (*outer, q.shape[-3]), (*outer, k.shape[-3])
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return tuple(batch), tuple(batch)


def _lse_dtype(q):
    return torch.float64 if q.dtype == torch.float64 else torch.float32


@torch.library.register_fake("bigmodel::scaled_dot_product_attention_forward")
def _forward_fake(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa, dropout_seed):
    batch, _ = _batch_shapes(q, k, v, enable_gqa)
    out = q.new_empty((*batch, q.shape[-2], v.shape[-1]))
    lse = q.new_empty((*batch, q.shape[-2]), dtype=_lse_dtype(q))
    return out, lse


@torch.library.register_fake("bigmodel::scaled_dot_product_attention_backward")
def _backward_fake(grad_output, q, k, v, output, logsumexp, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                   dropout_seed):
    batch, kv_batch = _batch_shapes(q, k, v, enable_gqa)
    return (q.new_empty((*batch, q.shape[-2], q.shape[-1])),
            q.new_empty((*kv_batch, k.shape[-2], k.shape[-1])),
            q.new_empty((*kv_batch, v.shape[-2], v.shape[-1])))


@torch.library.register_fake("bigmodel::attention_dropout_mask")
def _dropout_mask_fake(dropout_seed, batch_heads, L, S, dropout_p):
    return torch.empty((batch_heads, L, S), dtype=torch.bool, device="cpu")


# ---- autograd --------------------------------------------------------------------------------


def _setup(ctx, inputs, output):
    q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa, dropout_seed = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, attn_mask, dropout_seed)
    ctx.args = (dropout_p, is_causal, scale, enable_gqa)
    ctx.mark_non_differentiable(lse)


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # The backward op returns gradients of the broadcast inputs; sum them back to the inputs'.
    return grad if grad.shape == like.shape else grad.sum_to_size(like.shape)


def _backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse, attn_mask, dropout_seed = ctx.saved_tensors
    if ctx.needs_input_grad[3]:
        raise NotImplementedError(f"{_OP}: gradients with respect to attn_mask are not supported; pass "
                                  "attn_mask.detach()")
    if not any(ctx.needs_input_grad[:3]):
        return None, None, None, None, None, None, None, None, None
    gq, gk, gv = _ops.scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, attn_mask, *ctx.args,
                                                            dropout_seed)
    return (_reduce_to(gq, q) if ctx.needs_input_grad[0] else None,
            _reduce_to(gk, k) if ctx.needs_input_grad[1] else None,
            _reduce_to(gv, v) if ctx.needs_input_grad[2] else None,
            None, None, None, None, None, None)


torch.library.register_autograd("bigmodel::scaled_dot_product_attention_forward", _backward, setup_context=_setup)
