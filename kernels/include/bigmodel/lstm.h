// LSTM: one layer, one direction, over a whole (T, B, I) sequence, forward and backward.
//
// Math and gate order (i, f, g, o) are torch.nn.LSTM's. For each time step t (visited
// T-1 .. 0 when `reverse`):
//
//   G_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh                      (B, 4H)
//   i = sigmoid(G_t[:, 0:H])   f = sigmoid(G_t[:, H:2H])
//   g = tanh(G_t[:, 2H:3H])    o = sigmoid(G_t[:, 3H:4H])
//   c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)
//
// where h_{t-1} / c_{t-1} are h0 / c0 at the first step visited. The input projection of all T
// steps is one GEMM; each step then adds h_{t-1} W_hh^T (a pre-packed W_hh) into G_t and applies
// the gate nonlinearities and the c/h update while that tile is still in cache.
//
// Variable lengths (packed sequences): with `lengths` set, batch row b takes part in steps
// t < lengths[b] only; lengths must be non-increasing (PackedSequence's sorted order), so the
// active rows at each step are a prefix and the recurrent GEMM runs on that prefix. For t >=
// lengths[b], output[t, b] = 0 and the state is carried, so h_n / c_n hold each row's state after
// its last step. `lengths` is not combined with `reverse` (the caller reverses each sequence).
//
// The forward saves the activated gates (i, f, g, o: the pre-activations are overwritten in
// place, so they cost no extra memory) and c_t for every step; the backward reads them instead
// of recomputing (BPTT), and merges the weight gradients of all T steps into one GEMM each:
//   dW_ih = dG^T X      dW_hh = sum_t dG_t^T h_{t-1}      db = sum over (t, b) of dG
//   dX = dG W_ih
// where dG (T, B, 4H) are the gradients of the pre-activation gates.
#pragma once

#include <cstdint>

#include "bigmodel/common.h"

namespace bigmodel {

struct LstmParams {
  DType dtype = DType::f32;  // of input, states, weights, output and gradients
  // Dtype of the saved gates / cells and of the grad_gates workspace: dtype on the CPU; float32
  // for float16 / bfloat16 on CUDA (gates are kept in float32 there).
  DType work_dtype = DType::f32;
  int64_t T = 0, B = 0, I = 0, H = 0;
  bool reverse = false;
  bool has_bias = false;
  const int64_t* lengths = nullptr;  // B entries in [0, T], non-increasing; null: every row runs T steps.
                                     // Host memory, on CUDA too (only the per-step row counts are used).

  // Forward. All tensors contiguous.
  const void* input = nullptr;  // (T, B, I)
  const void* h0 = nullptr;     // (B, H)
  const void* c0 = nullptr;     // (B, H)
  const void* w_ih = nullptr;   // (4H, I)
  const void* w_hh = nullptr;   // (4H, H)
  const void* b_ih = nullptr;   // (4H), when has_bias
  const void* b_hh = nullptr;   // (4H), when has_bias
  void* output = nullptr;       // (T, B, H)
  void* h_n = nullptr;          // (B, H)
  void* c_n = nullptr;          // (B, H)
  void* gates = nullptr;        // (T, B, 4H) work_dtype: activated i, f, g, o (read by the backward)
  void* cells = nullptr;        // (T, B, H) work_dtype: c_t (read by the backward)
  // CPU forward only: gates and cells both null means inference. Nothing is saved, and each step
  // is one GEMM over [x_t | h_{t-1}] (K = I + H) into a block that stays in cache, instead of the
  // input projection of all T steps written to memory first (results agree to rounding).

  // Backward: reads input, h0, c0, w_ih, w_hh, output, gates, cells (as the forward left them)
  // and the incoming gradients; any of these three may be null, meaning zeros.
  const void* grad_output = nullptr;  // (T, B, H)
  const void* grad_h_n = nullptr;     // (B, H)
  const void* grad_c_n = nullptr;     // (B, H)
  void* grad_gates = nullptr;         // (T, B, 4H) work_dtype: workspace, overwritten
  void* grad_input = nullptr;         // (T, B, I)
  void* grad_h0 = nullptr;            // (B, H)
  void* grad_c0 = nullptr;            // (B, H)
  void* grad_w_ih = nullptr;          // (4H, I)
  void* grad_w_hh = nullptr;          // (4H, H)
  void* grad_bias = nullptr;          // (4H): the gradient of b_ih, which equals that of b_hh

  int num_threads = 1;  // CPU: OpenMP threads the kernel may use
};

namespace cpu {
// float32 and float64. Throws std::invalid_argument on bad parameters.
void lstm_forward(const LstmParams& p);
void lstm_backward(const LstmParams& p);
}  // namespace cpu

namespace cuda {
// float32, float16 and bfloat16 (float64 too, untuned), launched on `stream` (a cudaStream_t).
// `workspace` is device memory of lstm_workspace_bytes(p) bytes (the caller allocates it with
// its caching allocator). A failed launch throws std::runtime_error with the CUDA error string.
int64_t lstm_workspace_bytes(const LstmParams& p, bool backward);
void lstm_forward(const LstmParams& p, void* workspace, void* stream);
void lstm_backward(const LstmParams& p, void* workspace, void* stream);
}  // namespace cuda

}  // namespace bigmodel
