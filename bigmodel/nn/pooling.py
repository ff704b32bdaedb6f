"""MaxPool2d and AvgPool2d: subclasses of their torch.nn twins whose forward runs our kernels."""

from __future__ import annotations

import torch

from .. import ops


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on bigmodel's kernels (same arguments, attributes and repr)."""

    def forward(self, input: torch.Tensor):
        return ops.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d on bigmodel's kernels (same arguments, attributes and repr)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                              self.count_include_pad, self.divisor_override)
