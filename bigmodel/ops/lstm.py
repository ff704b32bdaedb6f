"""lstm_cell and lstm (one layer, one direction) on bigmodel's fused LSTM kernels.

Gate order and math are torch.nn.LSTMCell's / torch.nn.LSTM's (i, f, g, o). The registered ops
also return the activated gates and the cell states of every step, which their backward reads
(BPTT without recomputation); the functions here return only what torch returns.
"""

from __future__ import annotations

import torch

_ops = torch.ops.bigmodel


def _zeros_state(input: torch.Tensor, batch_shape: tuple, hidden_size: int) -> torch.Tensor:
    return torch.zeros(*batch_shape, hidden_size, dtype=input.dtype, device=input.device)


def _state(op: str, hx, input: torch.Tensor, batch_shape: tuple, w_hh):
    if hx is None:
        # the hidden size comes from w_hh: check it is a matrix before indexing its shape
        if not isinstance(w_hh, torch.Tensor):
            raise TypeError(f"{op}: w_hh must be a tensor, got {type(w_hh).__name__}")
        if w_hh.dim() != 2:
            raise ValueError(f"{op}: w_hh must have shape (4 * hidden_size, hidden_size), got a {w_hh.dim()}-D "
                             f"tensor of shape {list(w_hh.shape)}")
        z = _zeros_state(input, batch_shape, w_hh.shape[-1])
        return z, z
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"{op}: hx must be a tuple (h, c) of two tensors or None, got {type(hx).__name__}")
    return hx[0], hx[1]


def lstm_cell(input: torch.Tensor, hx, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None = None,
              b_hh: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step, as torch.nn.LSTMCell: returns (h', c').

    input is (B, input_size) or (input_size,); hx is (h, c), each (B, hidden_size) or
    (hidden_size,), or None for zeros. w_ih is (4H, input_size), w_hh (4H, H), biases (4H,).
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"lstm_cell: input must be a tensor, got {type(input).__name__}")
    batch_shape = tuple(input.shape[:-1]) if input.dim() == 2 else ()
    h, c = _state("lstm_cell", hx, input, batch_shape, w_hh)
    h_new, c_new, _ = _ops.lstm_cell(input, h, c, w_ih, w_hh, b_ih, b_hh)
    return h_new, c_new


def lstm(input: torch.Tensor, hx, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None = None,
         b_hh: torch.Tensor | None = None, reverse: bool = False,
         lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One LSTM layer in one direction over a (T, B, input_size) sequence.

    Returns (output (T, B, H), (h_n, c_n) each (B, H)). hx = (h0, c0), each (B, H), or None for
    zeros. reverse=True runs the steps from T-1 down to 0 (the backward direction of a
    bidirectional LSTM). lengths (int64 CPU tensor of B non-increasing values, as a
    PackedSequence's) makes row b run lengths[b] steps: its output is zero after that and h_n /
    c_n hold its state after its last step.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"lstm: input must be a tensor, got {type(input).__name__}")
    batch_shape = (input.shape[1],) if input.dim() == 3 else ()
    h0, c0 = _state("lstm", hx, input, batch_shape, w_hh)
    tensors = (input, h0, c0, w_ih, w_hh, b_ih, b_hh)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, h_n, c_n, _, _ = _ops.lstm(input, h0, c0, w_ih, w_hh, b_ih, b_hh, bool(reverse), lengths, save)
    return out, (h_n, c_n)


# ---- shapes for torch.compile / meta tensors ------------------------------------------------


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@torch.library.register_fake("bigmodel::lstm")
def _lstm_fake(input, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, lengths=None,
               save_for_backward=True):
    T, B, _ = input.shape
    H = w_hh.shape[1]
    wd = _work_dtype(input.dtype)
    if not save_for_backward:
        return (input.new_empty((T, B, H)), input.new_empty((B, H)), input.new_empty((B, H)),
                input.new_empty((0,), dtype=wd), input.new_empty((0,), dtype=wd))
    return (input.new_empty((T, B, H)), input.new_empty((B, H)), input.new_empty((B, H)),
            input.new_empty((T, B, 4 * H), dtype=wd), input.new_empty((T, B, H), dtype=wd))


@torch.library.register_fake("bigmodel::lstm_backward")
def _lstm_backward_fake(grad_output, grad_h_n, grad_c_n, input, hx, cx, w_ih, w_hh, output, gates, cells,
                        reverse=False, lengths=None):
    H = w_hh.shape[1]
    return (input.new_empty(input.shape), hx.new_empty(hx.shape), cx.new_empty(cx.shape),
            w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape), input.new_empty((4 * H,)))


@torch.library.register_fake("bigmodel::lstm_cell")
def _lstm_cell_fake(input, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None):
    H = w_hh.shape[1]
    gshape = (*input.shape[:-1], 4 * H)
    return (hx.new_empty(hx.shape), cx.new_empty(cx.shape),
            input.new_empty(gshape, dtype=_work_dtype(input.dtype)))


# ---- autograd --------------------------------------------------------------------------------
# The forward saves the activated gates and cells it returns; the backward op reads them, runs
# BPTT and returns every gradient at once. The gradient of b_ih equals that of b_hh.


def _lstm_setup(ctx, inputs, output):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh, reverse, lengths, *_ = inputs
    out, _, _, gates, cells = output
    ctx.save_for_backward(input, hx, cx, w_ih, w_hh, out, gates, cells, lengths)
    ctx.reverse = reverse
    ctx.has_bias = b_ih is not None
    ctx.mark_non_differentiable(gates, cells)


def _lstm_backward(ctx, grad_out, grad_h_n, grad_c_n, _grad_gates, _grad_cells):
    input, hx, cx, w_ih, w_hh, out, gates, cells, lengths = ctx.saved_tensors
    dx, dh, dc, dw_ih, dw_hh, db = _ops.lstm_backward(grad_out, grad_h_n, grad_c_n, input, hx, cx, w_ih, w_hh, out,
                                                      gates, cells, ctx.reverse, lengths)
    db_ih = db if ctx.has_bias and ctx.needs_input_grad[5] else None
    db_hh = db if ctx.has_bias and ctx.needs_input_grad[6] else None
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, None, None, None


torch.library.register_autograd("bigmodel::lstm", _lstm_backward, setup_context=_lstm_setup)


def _cell_setup(ctx, inputs, output):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh = inputs
    h, c, gates = output
    ctx.save_for_backward(input, hx, cx, w_ih, w_hh, h, c, gates)
    ctx.has_bias = b_ih is not None
    ctx.mark_non_differentiable(gates)


def _cell_backward(ctx, grad_h, grad_c, _grad_gates):
    input, hx, cx, w_ih, w_hh, h, c, gates = ctx.saved_tensors
    batched = input.dim() == 2
    # One step of the layer op: T = 1 (and B = 1 when unbatched).
    lead = (lambda t: t.unsqueeze(0)) if batched else (lambda t: t.unsqueeze(0).unsqueeze(0))
    row = (lambda t: t) if batched else (lambda t: t.unsqueeze(0))
    dx, dh, dc, dw_ih, dw_hh, db = _ops.lstm_backward(
        None if grad_h is None else lead(grad_h), None, None if grad_c is None else row(grad_c), lead(input),
        row(hx), row(cx), w_ih, w_hh, lead(h), lead(gates), lead(c), False, None)
    if not batched:
        dx, dh, dc = dx.reshape(input.shape), dh.reshape(hx.shape), dc.reshape(cx.shape)
    else:
        dx = dx.squeeze(0)
    db_ih = db if ctx.has_bias and ctx.needs_input_grad[5] else None
    db_hh = db if ctx.has_bias and ctx.needs_input_grad[6] else None
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


torch.library.register_autograd("bigmodel::lstm_cell", _cell_backward, setup_context=_cell_setup)
