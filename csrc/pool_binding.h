// Torch-facing pooling ops, shared by the CPU and CUDA registrations: argument checks, layout
// handling, output allocation and Params filling. Each takes its backend's kernel first, then the
// schema's arguments (the pattern is described at the top of csrc/registration.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "bigmodel/pool.h"
#include "common.h"

namespace bigmodel::binding {

using PoolKernel = Kernel<Pool2dParams>;

at::Tensor max_pool2d(const PoolKernel& kernel, const at::Tensor& self, at::IntArrayRef kernel_size,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode);
std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const PoolKernel& kernel, const at::Tensor& self,
                                                           at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                                           at::IntArrayRef padding, at::IntArrayRef dilation,
                                                           bool ceil_mode);
at::Tensor max_pool2d_backward(const PoolKernel& kernel, const at::Tensor& grad_output, const at::Tensor& self,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode);
at::Tensor avg_pool2d(const PoolKernel& kernel, const at::Tensor& self, at::IntArrayRef kernel_size,
                      at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      std::optional<int64_t> divisor_override);
at::Tensor avg_pool2d_backward(const PoolKernel& kernel, const at::Tensor& grad_output, const at::Tensor& self,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override);

}  // namespace bigmodel::binding
