// Torch-facing attention ops, shared by the CPU and CUDA registrations: argument checks,
// broadcasting to (B, H, L, E) views, output allocation and Params filling. Each backend passes
// its kernel entry point.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <tuple>

#include "bigmodel/attention.h"

namespace bigmodel::binding {

using AttentionKernel = std::function<void(const AttentionParams&)>;

// Returns (output, logsumexp): output has the broadcast batch shape of the inputs + (L, Ev),
// logsumexp the same batch shape + (L,), float32 (float64 for float64 inputs).
std::tuple<at::Tensor, at::Tensor> attention_forward(const at::Tensor& query, const at::Tensor& key,
                                                     const at::Tensor& value,
                                                     const std::optional<at::Tensor>& attn_mask, double dropout_p,
                                                     bool is_causal, std::optional<double> scale, bool enable_gqa,
                                                     const std::optional<at::Tensor>& dropout_seed,
                                                     const AttentionKernel& kernel);

// Returns (grad_query, grad_key, grad_value) with the broadcast shapes the forward used: for
// query the output's batch shape + (L, E); for key / value the same batch shape with the
// key/value head count + (S, E) / (S, Ev). The caller sums them down to the inputs' shapes.
// `workspace_float_rows` > 0 asks for a float32 workspace of that many elements per query row.
std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_backward(
    const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
    const at::Tensor& output, const at::Tensor& logsumexp, const std::optional<at::Tensor>& attn_mask,
    double dropout_p, bool is_causal, std::optional<double> scale, bool enable_gqa,
    const std::optional<at::Tensor>& dropout_seed, bool needs_workspace, const AttentionKernel& kernel);

}  // namespace bigmodel::binding
