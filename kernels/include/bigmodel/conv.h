// 2-D convolution: parameters, output-size rule and kernel entry points (forward, gradient with
// respect to the input, gradient with respect to the weight and bias).
//
// Semantics are those of torch.nn.functional.conv2d (cross-correlation):
//
//   out[n, oc, oh, ow] = bias[oc] + sum_{ic < ICg, kh, kw}
//       in[n, g*ICg + ic, oh*sH - pH + kh*dH, ow*sW - pW + kw*dW] * weight[oc, ic, kh, kw]
//
// with g = oc / OCg the group of oc, ICg = IC / groups and OCg = OC / groups. Input positions
// outside [0, H) x [0, W) read as zero. pH / pW are the top / left padding; the bottom / right
// padding is whatever OH / OW imply (so the asymmetric padding of padding='same' with an even
// dilated kernel is expressed by OH / OW, not by extra fields).
#pragma once

#include <cstdint>

#include "bigmodel/common.h"

namespace bigmodel {

struct Conv2dParams {
  DType dtype = DType::f32;
  // Layout of input, output and both activation gradients (NCHW- or NHWC-contiguous). The weight
  // and its gradient are always contiguous (OC, ICg, KH, KW); bias and its gradient (OC).
  Layout layout = Layout::nchw;
  int64_t N = 0, IC = 0, H = 0, W = 0;    // input (N, IC, H, W)
  int64_t OC = 0, OH = 0, OW = 0;         // output (N, OC, OH, OW)
  int64_t KH = 1, KW = 1;                 // weight (OC, IC / groups, KH, KW)
  int64_t sH = 1, sW = 1, pH = 0, pW = 0, dH = 1, dW = 1;
  int64_t groups = 1;
  int num_threads = 1;  // OpenMP threads the kernel may use

  // Forward reads input, weight, bias (may be null) and overwrites output.
  // Backward-input reads grad_output and weight and overwrites grad_input.
  // Backward-weight reads grad_output and input and overwrites grad_weight, and grad_bias when it
  // is not null (grad_bias[oc] = sum of grad_output over n, oh, ow).
  const void* input = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  void* output = nullptr;
  const void* grad_output = nullptr;
  void* grad_input = nullptr;
  void* grad_weight = nullptr;
  void* grad_bias = nullptr;

  // CUDA backward-weight only: device scratch of cuda::conv2d_backward_weight_workspace_bytes(p)
  // bytes (per-split partial sums of the weight gradient, reduced in a fixed order).
  void* workspace = nullptr;
};

// Output length along one dimension for a padded extent `in + pad_begin + pad_end`:
//   out = floor((in + pad_begin + pad_end - d*(k-1) - 1) / s) + 1.
// Returns a value < 1 when the dilated kernel is larger than the padded input (the caller reports
// the error).
int64_t conv_output_size(int64_t in, int64_t k, int64_t s, int64_t pad_begin, int64_t pad_end, int64_t d);

namespace cpu {
// float32 (tuned) and float64.
void conv2d_forward(const Conv2dParams& p);
void conv2d_backward_input(const Conv2dParams& p);
void conv2d_backward_weight(const Conv2dParams& p);
}  // namespace cpu

namespace cuda {
// float32, float64, float16 and bfloat16 (16-bit types accumulate in float32). Launched on
// `stream` (a cudaStream_t); a failed launch throws std::runtime_error with the CUDA error.
void conv2d_forward(const Conv2dParams& p, void* stream);
void conv2d_backward_input(const Conv2dParams& p, void* stream);
void conv2d_backward_weight(const Conv2dParams& p, void* stream);
// Bytes of p.workspace that conv2d_backward_weight needs on the current device (0 if none).
int64_t conv2d_backward_weight_workspace_bytes(const Conv2dParams& p);
}  // namespace cuda

}  // namespace bigmodel
