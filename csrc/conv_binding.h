// Torch-facing convolution ops, shared by the CPU and CUDA registrations: argument checks,
// layouts, output allocation and Params filling. Each takes its backend's kernel first, then the
// schema's arguments (the pattern is described at the top of csrc/registration.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "bigmodel/conv.h"
#include "common.h"

namespace bigmodel::binding {

using ConvKernel = Kernel<Conv2dParams>;

// padding: [p], [pH, pW] or [top, bottom, left, right].
at::Tensor conv2d(const ConvKernel& kernel, const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                  at::IntArrayRef dilation, int64_t groups);
at::Tensor conv2d_backward_input(const ConvKernel& kernel, const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, int64_t groups);
// Returns (grad_weight, grad_bias); grad_bias has shape (0,) unless bias_grad.
std::tuple<at::Tensor, at::Tensor> conv2d_backward_weight(const ConvKernel& kernel, const at::Tensor& grad_output,
                                                          const at::Tensor& input, const at::Tensor& weight,
                                                          at::IntArrayRef stride, at::IntArrayRef padding,
                                                          at::IntArrayRef dilation, int64_t groups, bool bias_grad);

}  // namespace bigmodel::binding
