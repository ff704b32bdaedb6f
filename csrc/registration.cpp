// Every bigmodel operator schema, in one place, and the one way an op is registered.
//
// An op lives in three places (copy an existing op's three to add one):
//   1. its schema, below;
//   2. csrc/<family>.cpp: the torch-facing function, declared in csrc/<family>_binding.h when CUDA
//      shares it. It takes the backend's kernel first, then the schema's arguments in order:
//        at::Tensor max_pool2d(const PoolKernel& kernel, const at::Tensor& self, ...);
//      and does everything but the arithmetic: checks every argument (here, once, for every
//      backend, with the messages users see; the CPU kernels' entry points check their Params
//      struct again as a contract, see kernels/include/bigmodel/common.h), allocates the outputs,
//      fills the Params and calls kernel(params) through run_kernel. The same file registers the
//      CPU impl by binding the framework-free entry point of kernels/include/bigmodel/<family>.h:
//        m.impl("max_pool2d", binding::bind(&binding::max_pool2d, cpu::max_pool2d_forward));
//   3. csrc/cuda/<family>_cuda.cpp: the CUDA impl, the same function bound to the CUDA launcher,
//      under a guard for the device of the first CUDA tensor argument (csrc/cuda/launch.h):
//        m.impl("max_pool2d", bind_cuda(&binding::max_pool2d, launch(cuda::max_pool2d_forward)));
//      An op with no CUDA kernel by design is listed in kCpuOnlyOps below.
// bigmodel/ops/<family>.py adds the fake (shape) functions and autograd formulas. Ops that only
// tests need are not registered here: they live in csrc/test_ops/, which the tests build.
#include "registration.h"

#include <torch/library.h>

#include <algorithm>
#include <array>

namespace bigmodel::binding {

// Ops with a CPU kernel only, by design: the GEMM core is the CPU engine the CPU kernels share
// (the CUDA kernels tile their own products), and the dropout mask is made from a CPU seed
// (bigmodel.nn.MultiheadAttention moves it to the weights' device for need_weights=True).
// build_info() reports them; every other op needs a CUDA kernel in a CUDA build.
constexpr std::array<std::string_view, 6> kCpuOnlyOps = {
    "gemm", "gemm_", "gemm_batch_reduce", "gemm_pack", "gemm_prepacked", "attention_dropout_mask"};

bool is_cpu_only_op(std::string_view name) {
  return std::find(kCpuOnlyOps.begin(), kCpuOnlyOps.end(), name) != kCpuOnlyOps.end();
}

}  // namespace bigmodel::binding

TORCH_LIBRARY(bigmodel, m) {
  // ---- pooling ----------------------------------------------------------------------------
  // Same arguments as aten::max_pool2d; `stride=[]` means stride = kernel_size.
  m.def("max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
        "int[2] dilation=1, bool ceil_mode=False) -> Tensor");
  // Also returns torch's indices (ih * W + iw within each plane), as return_indices=True does.
  m.def("max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
        "int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)");
  // Gradient w.r.t. self; recomputes each window's argmax from `self` (no indices needed).
  m.def("max_pool2d_backward(Tensor grad_output, Tensor self, int[2] kernel_size, int[2] stride, "
        "int[2] padding, int[2] dilation, bool ceil_mode) -> Tensor");
  m.def("avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
        "bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor");
  m.def("avg_pool2d_backward(Tensor grad_output, Tensor self, int[2] kernel_size, int[2] stride, "
        "int[2] padding, bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");

  // ---- GEMM core (kernels/include/bigmodel/gemm.h) ------------------------------------------
  // alpha * a @ b + beta * c for 2-D float tensors of any strides (a transposed view costs
  // nothing). c broadcasts as in torch.addmm; with beta == 0 it is ignored, NaN included.
  m.def("gemm(Tensor a, Tensor b, Tensor? c=None, *, float alpha=1., float beta=0.) -> Tensor");
  // In place: c = alpha * a @ b + beta * c, c of any (non-overlapping) strides.
  m.def("gemm_(Tensor(a!) c, Tensor a, Tensor b, *, float alpha=1., float beta=1.) -> ()");
  // alpha * sum_t a[t] @ b[t] + beta * c; a is (T, M, K), b is (T, K, N): one register tile
  // accumulates over all T (the batch-reduce entry convolution uses).
  // a and/or b may also be gemm_pack buffers of the concatenated (T*K) operand.
  m.def("gemm_batch_reduce(Tensor a, Tensor b, Tensor? c=None, *, float alpha=1., float beta=0.) -> Tensor");
  // x packed for the active ISA path as operand side='a' (x is M x K) or 'b' (x is K x N): a
  // uint8 buffer (64-byte header + panels) for gemm_prepacked.
  // x may also be 3-D (T, rows, cols): the concatenated-K operand of a batch-reduce, packed once
  // (convolution's weights over taps); gemm_batch_reduce then takes the buffer in its place.
  m.def("gemm_pack(Tensor x, str side) -> Tensor");
  // As gemm, where a and/or b may be gemm_pack buffers (packed once, reused across calls).
  m.def("gemm_prepacked(Tensor a, Tensor b, Tensor? c=None, *, float alpha=1., float beta=0.) -> Tensor");

  // ---- convolution ------------------------------------------------------------------------
  // torch.nn.functional.conv2d; padding is [p], [pH, pW] or [top, bottom, left, right] (the
  // asymmetric form is what padding='same' needs for even dilated kernels).
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias=None, int[2] stride=1, int[] padding=[0, 0], "
        "int[2] dilation=1, int groups=1) -> Tensor");
  // Gradient w.r.t. input; `input` supplies the shape and memory format (its values are not read).
  m.def("conv2d_backward_input(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, int[] padding, "
        "int[2] dilation, int groups) -> Tensor");
  // (grad_weight, grad_bias); `weight` supplies the shape. grad_bias has shape (0,) unless bias_grad.
  m.def("conv2d_backward_weight(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, int[] padding, "
        "int[2] dilation, int groups, bool bias_grad) -> (Tensor, Tensor)");

  // ---- LSTM -------------------------------------------------------------------------------
  // One layer, one direction, over (T, B, input_size); gate order i, f, g, o as torch.nn.LSTM.
  // gates / cells are the saved activations the backward reads (float32 for 16-bit inputs).
  // lengths (int64, CPU, non-increasing, not with reverse): row b runs lengths[b] steps only.
  // save_for_backward=False (inference): gates and cells come back empty, shape (0,).
  m.def("lstm(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih=None, "
        "Tensor? b_hh=None, bool reverse=False, Tensor? lengths=None, bool save_for_backward=True) -> "
        "(Tensor output, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  // grad_bias is the gradient of b_ih, which equals that of b_hh. Missing gradients are zeros.
  m.def("lstm_backward(Tensor? grad_output, Tensor? grad_h_n, Tensor? grad_c_n, Tensor input, Tensor hx, "
        "Tensor cx, Tensor w_ih, Tensor w_hh, Tensor output, Tensor gates, Tensor cells, bool reverse=False, "
        "Tensor? lengths=None) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih, "
        "Tensor grad_w_hh, Tensor grad_bias)");
  // One step of torch.nn.LSTMCell, batched (B, input_size) or unbatched (input_size,).
  m.def("lstm_cell(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih=None, "
        "Tensor? b_hh=None) -> (Tensor h, Tensor c, Tensor gates)");

  // ---- attention ----------------------------------------------------------------------------
  // torch.nn.functional.scaled_dot_product_attention's signature; a composite of the forward op.
  m.def("scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, "
        "float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor");
  // Returns the output and the per-row logsumexp (float32; float64 for float64 inputs), the only
  // things the backward needs besides the inputs. dropout_seed: 0-dim int64 tensor, needed when
  // dropout_p > 0; the dropout mask is a hash of (seed, position), regenerated by the backward.
  m.def("scaled_dot_product_attention_forward(Tensor query, Tensor key, Tensor value, Tensor? attn_mask, "
        "float dropout_p, bool is_causal, float? scale, bool enable_gqa, Tensor? dropout_seed) "
        "-> (Tensor output, Tensor logsumexp)");
  // Gradients with the forward's broadcast shapes (the caller sums them down to the inputs').
  m.def("scaled_dot_product_attention_backward(Tensor grad_output, Tensor query, Tensor key, Tensor value, "
        "Tensor output, Tensor logsumexp, Tensor? attn_mask, float dropout_p, bool is_causal, float? scale, "
        "bool enable_gqa, Tensor? dropout_seed) -> (Tensor grad_query, Tensor grad_key, Tensor grad_value)");
  // The dropout keep-mask (batch_heads, L, S) the kernels use for a seed (need_weights, tests).
  m.def("attention_dropout_mask(Tensor dropout_seed, int batch_heads, int L, int S, float dropout_p) -> Tensor");
}
