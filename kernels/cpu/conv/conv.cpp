// Entry points of the CPU convolution kernels: the output-size rule, the choice of algorithm
// and the per-ISA dispatch.
//
//   depthwise (groups == IC == OC)  -> conv_depthwise_nchw_kernel.cpp (per-plane stencils) and
//                                      conv_depthwise_nhwc_kernel.cpp (channel vectors)
//   1x1, stride 1, unpadded, NCHW   -> conv_gemm.cpp: forward and grad-input on the GEMM core
//   everything else                 -> conv_direct_kernel.cpp / conv_weight_kernel.cpp
//                                      (direct register-tiled convolution on padded bands)
//
// Parameters are validated here, at the entry points (the rule is in bigmodel/common.h).
#include "bigmodel/conv.h"

#include <string>
#include <utility>

#include "cpu/check.h"
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

constexpr const char* kConv = "conv2d";

bool is_depthwise(const Conv2dParams& p) { return p.groups > 1 && p.groups == p.IC && p.OC == p.IC; }

// Sizes, window, groups and dtype; returns whether any output element exists.
bool check_shape(const Conv2dParams& p) {
  check::float_dtype(kConv, p.dtype);
  check::layout(kConv, p.layout);
  for (const auto& [name, v] : {std::pair{"N", p.N}, {"IC", p.IC}, {"H", p.H}, {"W", p.W}, {"OC", p.OC},
                                {"OH", p.OH}, {"OW", p.OW}, {"pH", p.pH}, {"pW", p.pW}})
    check::at_least(kConv, name, v, 0);
  for (const auto& [name, v] : {std::pair{"KH", p.KH}, {"KW", p.KW}, {"sH", p.sH}, {"sW", p.sW}, {"dH", p.dH},
                                {"dW", p.dW}, {"groups", p.groups}})
    check::at_least(kConv, name, v, 1);
  if (p.IC % p.groups != 0 || p.OC % p.groups != 0)
    check::fail(kConv, "IC (" + std::to_string(p.IC) + ") and OC (" + std::to_string(p.OC) +
                           ") must be divisible by groups (" + std::to_string(p.groups) + ")");
  return p.N > 0 && p.OC > 0 && p.OH > 0 && p.OW > 0;
}

}  // namespace

void conv2d_forward(const Conv2dParams& p) {
  if (!check_shape(p)) return;
  check::not_null(kConv, p.output, "output");
  if (p.IC > 0) {
    check::not_null(kConv, p.input, "input");
    check::not_null(kConv, p.weight, "weight");
  }
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
  const bool any_output = check_shape(p);
  if (p.N == 0 || p.IC == 0 || p.H == 0 || p.W == 0) return;
  check::not_null(kConv, p.grad_input, "grad_input");
  if (any_output) {
    check::not_null(kConv, p.grad_output, "grad_output");
    check::not_null(kConv, p.weight, "weight");
  }
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
  const bool any_output = check_shape(p);
  if (p.OC == 0) return;
  if (p.IC > 0) check::not_null(kConv, p.grad_weight, "grad_weight");
  if (any_output) check::not_null(kConv, p.grad_output, "grad_output");
  if (any_output && p.IC > 0 && p.H > 0 && p.W > 0) check::not_null(kConv, p.input, "input");
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
