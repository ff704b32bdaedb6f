// Torch-facing LSTM ops, shared by the CPU and CUDA registrations: argument checks, output
// allocation and Params filling. Each backend passes its kernel entry points.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <tuple>

#include "bigmodel/lstm.h"

namespace bigmodel::binding {

using LstmKernel = std::function<void(const LstmParams&)>;

// bigmodel::lstm -> (output, h_n, c_n, gates, cells). Without save_for_backward, gates and cells
// are returned empty (shape (0,)) and the kernel works in a reusable scratch buffer instead.
// `op` names the calling op in error messages (lstm_cell runs through here too).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm(
    const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh,
    bool reverse, const std::optional<at::Tensor>& lengths, bool save_for_backward, const LstmKernel& kernel,
    const char* op = "lstm");

// bigmodel::lstm_backward -> (grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const std::optional<at::Tensor>& grad_output, const std::optional<at::Tensor>& grad_h_n,
    const std::optional<at::Tensor>& grad_c_n, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& output, const at::Tensor& gates,
    const at::Tensor& cells, bool reverse, const std::optional<at::Tensor>& lengths, const LstmKernel& kernel);

// bigmodel::lstm_cell -> (h, c, gates): one step, batched (B, I) or unbatched (I).
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell(const at::Tensor& input, const at::Tensor& hx,
                                                         const at::Tensor& cx, const at::Tensor& w_ih,
                                                         const at::Tensor& w_hh,
                                                         const std::optional<at::Tensor>& b_ih,
                                                         const std::optional<at::Tensor>& b_hh,
                                                         const LstmKernel& kernel);

}  // namespace bigmodel::binding
