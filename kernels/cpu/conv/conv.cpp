// Entry points of the CPU convolution kernels: the output-size rule, the choice of algorithm
// and the per-ISA dispatch.
//
//   depthwise (groups == IC == OC)  -> conv_depthwise_nchw_kernel.cpp (per-plane stencils) and
//                                      conv_depthwise_nhwc_kernel.cpp (channel vectors)
//   1x1, stride 1, unpadded, NCHW   -> conv_gemm.cpp: forward and grad-input on the GEMM core
//   everything else                 -> conv_direct_kernel.cpp / conv_weight_kernel.cpp
//                                      (direct register-tiled convolution on padded bands)
#include "bigmodel/conv.h"

#include "cpu/dispatch.h"

namespace bigmodel {

int64_t conv_output_size(int64_t in, int64_t k, int64_t s, int64_t pad_begin, int64_t pad_end, int64_t d) {
  const int64_t span = in + pad_begin + pad_end - d * (k - 1) - 1;
  if (span < 0) return 0;
  return span / s + 1;
}

namespace cpu {

BIGMODEL_ISA_DECLARE(void, conv2d_direct_forward, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_direct_backward_input, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_direct_backward_weight, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_depthwise_nchw_forward, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_depthwise_nchw_backward_input, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_depthwise_nchw_backward_weight, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_depthwise_nhwc_forward, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_depthwise_nhwc_backward_input, (const Conv2dParams&))
BIGMODEL_ISA_DECLARE(void, conv2d_depthwise_nhwc_backward_weight, (const Conv2dParams&))

bool conv2d_is_pointwise_nchw(const Conv2dParams& p);
void conv2d_pointwise_forward(const Conv2dParams& p);
void conv2d_pointwise_backward_input(const Conv2dParams& p);

namespace {
bool is_depthwise(const Conv2dParams& p) { return p.groups > 1 && p.groups == p.IC && p.OC == p.IC; }
}  // namespace

void conv2d_forward(const Conv2dParams& p) {
  if (p.N == 0) return;
  if (is_depthwise(p)) {
    if (p.layout == Layout::nchw) {
      BIGMODEL_ISA_CALL(conv2d_depthwise_nchw_forward, p);
    }
    BIGMODEL_ISA_CALL(conv2d_depthwise_nhwc_forward, p);
  }
  if (conv2d_is_pointwise_nchw(p)) return conv2d_pointwise_forward(p);
  BIGMODEL_ISA_CALL(conv2d_direct_forward, p);
}

void conv2d_backward_input(const Conv2dParams& p) {
  if (p.N == 0) return;
  if (is_depthwise(p)) {
    if (p.layout == Layout::nchw) {
      BIGMODEL_ISA_CALL(conv2d_depthwise_nchw_backward_input, p);
    }
    BIGMODEL_ISA_CALL(conv2d_depthwise_nhwc_backward_input, p);
  }
  if (conv2d_is_pointwise_nchw(p)) return conv2d_pointwise_backward_input(p);
  BIGMODEL_ISA_CALL(conv2d_direct_backward_input, p);
}

// Also with N == 0: the gradients are then zero.
void conv2d_backward_weight(const Conv2dParams& p) {
  if (is_depthwise(p)) {
    if (p.layout == Layout::nchw) {
      BIGMODEL_ISA_CALL(conv2d_depthwise_nchw_backward_weight, p);
    }
    BIGMODEL_ISA_CALL(conv2d_depthwise_nhwc_backward_weight, p);
  }
  BIGMODEL_ISA_CALL(conv2d_direct_backward_weight, p);
}

}  // namespace cpu
}  // namespace bigmodel
