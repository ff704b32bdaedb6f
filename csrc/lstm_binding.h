// Torch-facing LSTM ops, shared by the CPU and CUDA registrations: argument checks, output
// allocation and Params filling. Each takes its backend's kernel first, then the schema's
// arguments (the pattern is described at the top of csrc/registration.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "bigmodel/lstm.h"
#include "common.h"

namespace bigmodel::binding {

using LstmKernel = Kernel<LstmParams>;

// bigmodel::lstm -> (output, h_n, c_n, gates, cells). Without save_for_backward, gates and cells
// are returned empty (shape (0,)) and the kernel works in a reusable scratch buffer instead.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm(
    const LstmKernel& forward, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
    const std::optional<at::Tensor>& b_hh, bool reverse, const std::optional<at::Tensor>& lengths,
    bool save_for_backward);

// bigmodel::lstm_backward -> (grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const LstmKernel& backward, const std::optional<at::Tensor>& grad_output,
    const std::optional<at::Tensor>& grad_h_n, const std::optional<at::Tensor>& grad_c_n, const at::Tensor& input,
    const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells, bool reverse,
    const std::optional<at::Tensor>& lengths);

// bigmodel::lstm_cell -> (h, c, gates): one step of the forward kernel, batched (B, I) or
// unbatched (I).
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell(const LstmKernel& forward, const at::Tensor& input,
                                                         const at::Tensor& hx, const at::Tensor& cx,
                                                         const at::Tensor& w_ih, const at::Tensor& w_hh,
                                                         const std::optional<at::Tensor>& b_ih,
                                                         const std::optional<at::Tensor>& b_hh);

}  // namespace bigmodel::binding
