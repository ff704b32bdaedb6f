"""MultiheadAttention, TransformerEncoderLayer and TransformerEncoder: subclasses of their
torch.nn twins whose attention runs on bigmodel's fused kernels.

Same constructor arguments, attributes and parameter names as torch.nn, so state_dicts load in
both directions. The projections, layer norms and feed-forward blocks stay torch.nn (linear
layers are not a bigmodel kernel family); only the attention core is replaced. torch's fused
fast paths (torch._native_multi_head_attention, the nested-tensor encoder path) would bypass
our kernels, so these modules never take them.

need_weights=True (torch.nn.MultiheadAttention's default) is supported through a clearly slower
path: the output still comes from the fused kernel, and the weights are computed separately in
plain PyTorch, materialising the (N, num_heads, L, S) probabilities (O(L*S) memory). With
dropout in training they are the very dropped-out weights the kernel used (same seed). Pass
need_weights=False, as TransformerEncoderLayer does, for the fast path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..ops import attention as _attn


def _merge_masks(attn_mask, key_padding_mask, bsz, num_heads, tgt_len, src_len):
    """torch's float masks ((L, S) or (N*H, L, S), and (N, S)) as one mask broadcastable to
    (N, H, L, S), without materialising more than torch's own addition would."""
    mask = None
    if attn_mask is not None:
        mask = attn_mask.unsqueeze(0) if attn_mask.dim() == 2 else attn_mask.view(bsz, num_heads, tgt_len, src_len)
        if mask.dim() == 3:
            mask = mask.unsqueeze(0)
    if key_padding_mask is not None:
        kpm = key_padding_mask.view(bsz, 1, 1, src_len)
        mask = kpm if mask is None else mask + kpm
    return mask


def _split_heads(x, seq_dim, num_heads):
    """(L, N, E) (seq_dim 0) or (N, L, E) (seq_dim 1) -> a (N, H, L, E/H) view, no copy."""
    a, b, e = x.shape
    x = x.view(a, b, num_heads, e // num_heads)
    return x.permute(1, 2, 0, 3) if seq_dim == 0 else x.permute(0, 2, 1, 3)


def _attention_weights(q, k, mask, is_causal, scale, dropout_p, seed):
    """The attention probabilities in plain PyTorch (need_weights=True only): (N, H, L, S)."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    L, S = scores.shape[-2:]
    if is_causal:
        scores = scores.masked_fill(~torch.ones(L, S, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    if mask is not None:
        scores = scores + mask
    seen = (scores > float("-inf")).any(dim=-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(~seen, 0.0), dim=-1) * seen  # rows seeing no key: 0
    if dropout_p > 0.0:
        n, h = weights.shape[:2]
        keep = _attn.dropout_keep_mask(seed, n * h, L, S, dropout_p).view(n, h, L, S).to(weights.device)
        weights = weights * keep * (1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0)
    return weights


class MultiheadAttention(torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention on bigmodel's fused attention (same arguments and state_dict).

    A query that sees no key (every key masked) gives zeros, where torch may give NaN. See the
    module docstring for need_weights=True.
    """

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        is_batched = F._mha_shape_check(query, key, value, key_padding_mask, attn_mask, self.num_heads)
        # Work in the input's own layout: projections and head splits stay views, no transposes.
        seq_dim = 1 if (self.batch_first and is_batched) else 0
        if not is_batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        tgt_len, bsz = (query.shape[0], query.shape[1]) if seq_dim == 0 else (query.shape[1], query.shape[0])
        src_len = key.shape[seq_dim]
        embed_dim, num_heads = self.embed_dim, self.num_heads
        if query.shape[-1] != embed_dim:
            raise AssertionError(f"was expecting embedding dimension of {embed_dim}, but got {query.shape[-1]}")
        head_dim = embed_dim // num_heads

        key_padding_mask = F._canonical_mask(mask=key_padding_mask, mask_name="key_padding_mask",
                                             other_type=F._none_or_dtype(attn_mask), other_name="attn_mask",
                                             target_type=query.dtype)
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer "
                               "module method `generate_square_subsequent_mask` to create this mask.")
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # the hint says attn_mask is the causal mask: use the kernel's causal path
        else:
            attn_mask = F._canonical_mask(mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="",
                                          target_type=query.dtype, check_other=False)
            is_causal = False
        if attn_mask is not None:
            if attn_mask.dim() == 2 and attn_mask.shape != (tgt_len, src_len):
                raise RuntimeError(f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be "
                                   f"{(tgt_len, src_len)}.")
            if attn_mask.dim() == 3 and attn_mask.shape != (bsz * num_heads, tgt_len, src_len):
                raise RuntimeError(f"The shape of the 3D attn_mask is {attn_mask.shape}, but should be "
                                   f"{(bsz * num_heads, tgt_len, src_len)}.")
            if attn_mask.dim() not in (2, 3):
                raise RuntimeError(f"attn_mask's dimension {attn_mask.dim()} is not supported")

        # Input projections, in the input's layout.
        if self._qkv_same_embed_dim:
            w, b = self.in_proj_weight, self.in_proj_bias
            if query is key and key is value:
                q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
            else:
                wq, wk, wv = w.chunk(3)
                bq, bk, bv = b.chunk(3) if b is not None else (None, None, None)
                q = F.linear(query, wq, bq)
                if key is value:
                    k, v = F.linear(key, torch.cat([wk, wv]), torch.cat([bk, bv]) if b is not None else None).chunk(
                        2, dim=-1)
                else:
                    k, v = F.linear(key, wk, bk), F.linear(value, wv, bv)
        else:
            bq, bk, bv = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
            q = F.linear(query, self.q_proj_weight, bq)
            k = F.linear(key, self.k_proj_weight, bk)
            v = F.linear(value, self.v_proj_weight, bv)

        if self.bias_k is not None and self.bias_v is not None:
            shape = (1, bsz, embed_dim) if seq_dim == 0 else (bsz, 1, embed_dim)
            k = torch.cat([k, self.bias_k.view(1, 1, embed_dim).expand(shape)], dim=seq_dim)
            v = torch.cat([v, self.bias_v.view(1, 1, embed_dim).expand(shape)], dim=seq_dim)
            attn_mask = F.pad(attn_mask, (0, 1)) if attn_mask is not None else None
            key_padding_mask = F.pad(key_padding_mask, (0, 1)) if key_padding_mask is not None else None

        q, k, v = (_split_heads(t, seq_dim, num_heads) for t in (q, k, v))  # (N, H, len, head_dim) views
        if self.add_zero_attn:
            zeros = k.new_zeros((bsz, num_heads, 1, head_dim))
            k, v = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)
            attn_mask = F.pad(attn_mask, (0, 1)) if attn_mask is not None else None
            key_padding_mask = F.pad(key_padding_mask, (0, 1)) if key_padding_mask is not None else None
        src_len = k.shape[2]
        if key_padding_mask is not None and key_padding_mask.shape != (bsz, src_len):
            raise AssertionError(f"expecting key_padding_mask shape of {(bsz, src_len)}, but got "
                                 f"{tuple(key_padding_mask.shape)}")
        mask = _merge_masks(attn_mask, key_padding_mask, bsz, num_heads, tgt_len, src_len)
        dropout_p = self.dropout if self.training else 0.0

        weights = None
        if need_weights:
            seed = _attn.draw_dropout_seed() if dropout_p > 0.0 else None
            out = _attn.scaled_dot_product_attention_with_seed(q, k, v, mask, dropout_p, is_causal, None, False, seed)
            weights = _attention_weights(q, k, mask, is_causal, 1.0 / math.sqrt(head_dim), dropout_p, seed)
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not is_batched:
                weights = weights.squeeze(0)
        else:
            out = _attn.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal)

        # (N, H, L, head_dim) -> the input's layout, then the output projection.
        out = out.permute(2, 0, 1, 3) if seq_dim == 0 else out.permute(0, 2, 1, 3)
        out = F.linear(out.reshape(out.shape[0], out.shape[1], embed_dim), self.out_proj.weight, self.out_proj.bias)
        if not is_batched:
            out = out.squeeze(1)
        return out, weights


class TransformerEncoderLayer(torch.nn.TransformerEncoderLayer):
    """torch.nn.TransformerEncoderLayer whose self-attention is bigmodel.nn.MultiheadAttention.

    Same constructor arguments, initialisation (parameters are created by torch's constructor,
    in the same order) and state_dict. Always runs the regular (non-fused) path of torch's layer.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_attn = _as_ours(self.self_attn)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        if src.is_nested:
            raise ValueError("bigmodel.nn.TransformerEncoderLayer: nested-tensor input is not supported; build the "
                             "encoder as bigmodel.nn.TransformerEncoder (or torch.nn.TransformerEncoder with "
                             "enable_nested_tensor=False)")
        src_key_padding_mask = F._canonical_mask(mask=src_key_padding_mask, mask_name="src_key_padding_mask",
                                                 other_type=F._none_or_dtype(src_mask), other_name="src_mask",
                                                 target_type=src.dtype)
        src_mask = F._canonical_mask(mask=src_mask, mask_name="src_mask", other_type=None, other_name="",
                                     target_type=src.dtype, check_other=False)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x


class TransformerEncoder(torch.nn.TransformerEncoder):
    """torch.nn.TransformerEncoder that never converts its input to a nested tensor (that fast
    path would skip the layers' own forward, and with it bigmodel's kernels)."""

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        self.use_nested_tensor = False
        return super().forward(src, mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)


def _as_ours(module: torch.nn.Module) -> torch.nn.Module:
    """The same module object's state under bigmodel's class (parameters shared, not copied)."""
    if type(module) is torch.nn.MultiheadAttention:
        new = MultiheadAttention.__new__(MultiheadAttention)
        new.__dict__ = module.__dict__
        return new
    return module
