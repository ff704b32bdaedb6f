// 2-D max and average pooling: parameters, output-size rule and kernel entry points.
//
// Semantics are those of torch.nn.functional.max_pool2d / avg_pool2d, index convention included:
// an index is ih * W + iw within its (n, c) plane; a window's taps are visited row by row and a
// tap replaces the running maximum when it is greater or NaN (so NaN propagates, and among equal
// maxima the first tap wins).
#pragma once

#include <cstdint>

#include "bigmodel/common.h"

namespace bigmodel {

struct Pool2dParams {
  DType dtype = DType::f32;
  Layout layout = Layout::nchw;  // input, output and both gradients share it
  int64_t N = 0, C = 0, H = 0, W = 0;  // input (N, C, H, W)
  int64_t OH = 0, OW = 0;              // output (N, C, OH, OW)
  int64_t kH = 1, kW = 1, sH = 1, sW = 1, pH = 0, pW = 0, dH = 1, dW = 1;
  bool count_include_pad = true;   // avg only
  int64_t divisor_override = 0;    // avg only; 0 = none
  int num_threads = 1;             // OpenMP threads the kernel may use

  // Tensors, contiguous in `layout`. Forward reads input, writes output (+ indices if non-null,
  // max only). Backward reads grad_output (+ input for max, which recomputes each window's
  // argmax instead of storing indices) and overwrites grad_input.
  const void* input = nullptr;
  void* output = nullptr;
  int64_t* indices = nullptr;
  const void* grad_output = nullptr;
  void* grad_input = nullptr;
};

// Output length along one dimension, torch's rule:
//   out = floor_or_ceil((in + 2p - d(k-1) - 1) / s) + 1, and with ceil_mode the last window must
//   start inside the input or its left padding.
// Returns a negative number where that length would be < 1 (the caller reports the error).
int64_t pool_output_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode);

namespace cpu {
void max_pool2d_forward(const Pool2dParams& p);
void max_pool2d_backward(const Pool2dParams& p);
void avg_pool2d_forward(const Pool2dParams& p);
void avg_pool2d_backward(const Pool2dParams& p);
}  // namespace cpu

namespace cuda {
// Launched on `stream` (a cudaStream_t); the launch is checked and a failure throws
// std::runtime_error with the CUDA error string.
void max_pool2d_forward(const Pool2dParams& p, void* stream);
void max_pool2d_backward(const Pool2dParams& p, void* stream);
void avg_pool2d_forward(const Pool2dParams& p, void* stream);
void avg_pool2d_backward(const Pool2dParams& p, void* stream);
}  // namespace cuda

}  // namespace bigmodel
