// Torch-facing convolution ops, shared by the CPU and CUDA registrations: argument checks,
// layouts, output allocation and Params filling. Each backend passes its kernel entry point.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <tuple>

#include "bigmodel/conv.h"

namespace bigmodel::binding {

using ConvKernel = std::function<void(const Conv2dParams&)>;

// padding: [p], [pH, pW] or [top, bottom, left, right].
at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                  const ConvKernel& kernel);
at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups, const ConvKernel& kernel);
// Returns (grad_weight, grad_bias); grad_bias has shape (0,) unless bias_grad.
std::tuple<at::Tensor, at::Tensor> conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                          const at::Tensor& weight, at::IntArrayRef stride,
                                                          at::IntArrayRef padding, at::IntArrayRef dilation,
                                                          int64_t groups, bool bias_grad, const ConvKernel& kernel);

}  // namespace bigmodel::binding
