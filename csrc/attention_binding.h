// Torch-facing attention ops, shared by the CPU and CUDA registrations: argument checks,
// broadcasting to (B, H, L, E) views, output allocation and Params filling. Each takes its
// backend's kernel first, then the schema's arguments (the pattern is described at the top of
// csrc/registration.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <tuple>

#include "bigmodel/attention.h"
#include "common.h"

namespace bigmodel::binding {

using AttentionKernel = Kernel<AttentionParams>;
// Writes the (batch_heads, L, S) keep-mask of a seed as bytes (cpu::attention_dropout_mask).
using DropoutMaskKernel =
    std::function<void(uint64_t seed, int64_t batch_heads, int64_t L, int64_t S, double p, uint8_t* keep)>;

// Returns (output, logsumexp): output has the broadcast batch shape of the inputs + (L, Ev),
// logsumexp the same batch shape + (L,), float32 (float64 for float64 inputs).
std::tuple<at::Tensor, at::Tensor> attention_forward(const AttentionKernel& kernel, const at::Tensor& query,
                                                     const at::Tensor& key, const at::Tensor& value,
                                                     const std::optional<at::Tensor>& attn_mask, double dropout_p,
                                                     bool is_causal, std::optional<double> scale, bool enable_gqa,
                                                     const std::optional<at::Tensor>& dropout_seed);

// Returns (grad_query, grad_key, grad_value) with the broadcast shapes the forward used: for
// query the output's batch shape + (L, E); for key / value the same batch shape with the
// key/value head count + (S, E) / (S, Ev). The caller sums them down to the inputs' shapes.
std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_backward(
    const AttentionKernel& kernel, const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key,
    const at::Tensor& value, const at::Tensor& output, const at::Tensor& logsumexp,
    const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal, std::optional<double> scale,
    bool enable_gqa, const std::optional<at::Tensor>& dropout_seed);

// The dropout keep-mask (batch_heads, L, S), bool, that the kernels apply for `seed`.
at::Tensor attention_dropout_mask(const DropoutMaskKernel& kernel, const at::Tensor& seed, int64_t batch_heads,
                                  int64_t L, int64_t S, double p);

}  // namespace bigmodel::binding
