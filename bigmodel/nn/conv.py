"""Conv2d: a subclass of torch.nn.Conv2d whose forward runs bigmodel's kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on bigmodel's kernels.

    Same constructor arguments, attributes, parameter names and initialisation as torch.nn.Conv2d,
    so state_dicts load across in both directions. Every padding_mode works: 'zeros' is the
    kernel's own zero padding; 'reflect', 'replicate' and 'circular' pad the input with
    torch.nn.functional.pad first, exactly as torch.nn.Conv2d does, then convolve unpadded.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return ops.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return ops.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
