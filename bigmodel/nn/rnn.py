"""LSTMCell and LSTM: subclasses of their torch.nn twins whose forward runs our fused kernels.

Constructor arguments, parameter names (weight_ih_l0, bias_hh_l1_reverse, ...), initialisation
and state_dict keys are torch's (they come from torch.nn's own __init__), so weights load both
ways. LSTM builds layers, directions and inter-layer dropout on bigmodel.ops.lstm (one layer,
one direction); PackedSequence input runs each row for its own length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import ops


class LSTMCell(torch.nn.LSTMCell):
    """torch.nn.LSTMCell on bigmodel's kernels (same arguments, parameters and results)."""

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: expected input to be 1-D (input_size,) or 2-D (batch, input_size), "
                             f"got {input.dim()}-D of shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"LSTMCell: input has {input.shape[-1]} features (its last dimension) but the cell was "
                             f"built with input_size={self.input_size}")
        if hx is not None:
            for name, t in zip(("h", "c"), hx):
                if t.dim() != input.dim() or t.shape[-1] != self.hidden_size or t.shape[:-1] != input.shape[:-1]:
                    want = (*input.shape[:-1], self.hidden_size)
                    raise ValueError(f"LSTMCell: hx {name} must have shape {tuple(want)}, got {tuple(t.shape)}")
        b_ih, b_hh = (self.bias_ih, self.bias_hh) if self.bias else (None, None)
        return ops.lstm_cell(input, hx, self.weight_ih, self.weight_hh, b_ih, b_hh)


def _reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x (T, B, F) with row b valid for t < lengths[b]: reverse each row within its length (the
    padding stays in place). Its own inverse."""
    T = x.shape[0]
    t = torch.arange(T).unsqueeze(1)
    n = lengths.unsqueeze(0)
    idx = torch.where(t < n, n - 1 - t, t).to(x.device)
    return x.gather(0, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class LSTM(torch.nn.LSTM):
    """torch.nn.LSTM on bigmodel's kernels: multi-layer, bidirectional, dropout, batch_first,
    unbatched and PackedSequence input. proj_size > 0 is not supported (ValueError)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_supported()

    @staticmethod
    def supports(module: torch.nn.LSTM) -> bool:
        """Whether convert() may swap this torch.nn.LSTM for ours (not with proj_size > 0)."""
        return module.proj_size == 0

    def _check_supported(self) -> None:
        if self.proj_size > 0:
            raise ValueError(f"bigmodel.nn.LSTM: proj_size > 0 is not supported (got proj_size={self.proj_size}); "
                             "use torch.nn.LSTM for LSTMs with projections")

    def _weights(self, layer: int, direction: int):
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        if self.bias:
            return w_ih, w_hh, getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx)
        return w_ih, w_hh, None, None

    def forward(self, input, hx=None):  # noqa: C901 - mirrors torch.nn.LSTM.forward's cases
        self._check_supported()
        num_dirs = 2 if self.bidirectional else 1
        packed = isinstance(input, PackedSequence)
        lengths = None
        sorted_idx = unsorted_idx = None
        if packed:
            data, batch_sizes, sorted_idx, unsorted_idx = input
            # Padded (T, B, F) in the packed (length-sorted) order, with each row's length.
            x, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes), batch_first=False)
            lengths = lengths.to(torch.int64)
            batched = True
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(f"LSTM: input must be a tensor or a PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: expected input to be 2-D (unbatched) or 3-D, got {input.dim()}-D of "
                                 f"shape {tuple(input.shape)}")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: input has {x.shape[-1]} features (its last dimension) but the LSTM was built "
                             f"with input_size={self.input_size}")
        B = x.shape[1]
        want = (self.num_layers * num_dirs, B, self.hidden_size)
        if hx is None:
            h0 = c0 = torch.zeros(want, dtype=x.dtype, device=x.device)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0) of two tensors")
            h0, c0 = hx
            for name, t in (("h_0", h0), ("c_0", c0)):
                expect = want if batched else (want[0], want[2])
                if tuple(t.shape) != tuple(expect):
                    raise ValueError(f"LSTM: expected {name} of shape {expect} (num_layers * num_directions, "
                                     f"{'batch, ' if batched else ''}hidden_size), got {tuple(t.shape)}")
            if not batched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
            if sorted_idx is not None:
                h0, c0 = h0.index_select(1, sorted_idx), c0.index_select(1, sorted_idx)

        layer_input = x
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(num_dirs):
                k = layer * num_dirs + d
                w = self._weights(layer, d)
                if d == 1 and lengths is not None:
                    # Backward direction of a packed batch: reverse each row within its length,
                    # run forwards, and reverse the output back.
                    out, (h, c) = ops.lstm(_reverse_padded(layer_input, lengths), (h0[k], c0[k]), *w,
                                           lengths=lengths)
                    out = _reverse_padded(out, lengths)
                else:
                    out, (h, c) = ops.lstm(layer_input, (h0[k], c0[k]), *w, reverse=d == 1, lengths=lengths)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outs[0] if num_dirs == 1 else torch.cat(outs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        output, h_n, c_n = layer_input, torch.stack(h_n), torch.stack(c_n)

        if packed:
            data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
            output = PackedSequence(data, batch_sizes, sorted_idx, unsorted_idx)
            if unsorted_idx is not None:
                h_n, c_n = h_n.index_select(1, unsorted_idx), c_n.index_select(1, unsorted_idx)
            return output, (h_n, c_n)
        if not batched:
            return output.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n, c_n)
