// Convolution ops: checks, layouts and allocation (shared with CUDA), plus the CPU registration.
#include <torch/library.h>

#include <limits>
#include <vector>

#include "conv_binding.h"

namespace bigmodel::binding {
namespace {

// Everything a convolution call needs after validation.
struct Prepared {
  at::Tensor input;   // 4-D, contiguous in fmt
  at::Tensor weight;  // contiguous (OC, ICg, KH, KW)
  at::MemoryFormat fmt;
  bool batched;
  Conv2dParams p;
};

Prepared prepare(const char* op, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                 at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK_VALUE(input.dim() == 3 || input.dim() == 4, op,
                    ": expected input of shape (C, H, W) or (N, C, H, W), got a ", input.dim(),
                    "-D tensor of shape ", input.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 4, op,
                    ": expected weight of shape (out_channels, in_channels / groups, kH, kW), got a ", weight.dim(),
                    "-D tensor of shape ", weight.sizes());
  TORCH_CHECK_VALUE(input.layout() == at::kStrided && weight.layout() == at::kStrided, op,
                    ": input and weight must be dense (strided) tensors");
  check_float_dtype(op, "input", input);
  check_same(op, "weight", weight, "input", input);

  Conv2dParams p;
  two_ints(op, "stride", stride, p.sH, p.sW);
  two_ints(op, "dilation", dilation, p.dH, p.dW);
  int64_t top, bottom, left, right;
  if (padding.size() == 4) {
    top = padding[0];
    bottom = padding[1];
    left = padding[2];
    right = padding[3];
  } else {
    TORCH_CHECK_VALUE(padding.size() == 1 || padding.size() == 2, op,
                      ": padding must be an int, a pair of ints or 4 ints (top, bottom, left, right), got ",
                      padding.size(), " values");
    top = bottom = padding[0];
    left = right = padding.size() == 2 ? padding[1] : padding[0];
  }
  TORCH_CHECK_VALUE(p.sH > 0 && p.sW > 0, op, ": stride must be positive, got ", pair_str(p.sH, p.sW));
  TORCH_CHECK_VALUE(p.dH > 0 && p.dW > 0, op, ": dilation must be positive, got ", pair_str(p.dH, p.dW));
  TORCH_CHECK_VALUE(top >= 0 && bottom >= 0 && left >= 0 && right >= 0, op, ": padding must be non-negative, got ",
                    padding);
  TORCH_CHECK_VALUE(groups > 0, op, ": groups must be positive, got ", groups);
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  TORCH_CHECK_VALUE(p.sH <= kMax && p.sW <= kMax && p.dH <= kMax && p.dW <= kMax && top <= kMax &&
                        bottom <= kMax && left <= kMax && right <= kMax && groups <= kMax,
                    op, ": stride, padding, dilation and groups must be below 2^31");

  Prepared r;
  r.batched = input.dim() == 4;
  const at::Tensor x = r.batched ? input : input.unsqueeze(0);
  p.N = x.size(0);
  p.IC = x.size(1);
  p.H = x.size(2);
  p.W = x.size(3);
  p.OC = weight.size(0);
  p.KH = weight.size(2);
  p.KW = weight.size(3);
  p.groups = groups;
  const int64_t ICg = weight.size(1);
  TORCH_CHECK_VALUE(p.OC > 0 && ICg > 0 && p.KH > 0 && p.KW > 0, op, ": weight has a zero-size dimension (shape ",
                    weight.sizes(), ")");
  TORCH_CHECK_VALUE(p.IC > 0 && p.H > 0 && p.W > 0, op, ": input has a zero-size channel or spatial dimension (shape ",
                    input.sizes(), "); only the batch dimension may be 0");
  TORCH_CHECK_VALUE(p.IC % groups == 0, op, ": groups (", groups, ") must divide the input channels (", p.IC, ")");
  TORCH_CHECK_VALUE(p.OC % groups == 0, op, ": groups (", groups, ") must divide the output channels (weight.size(0) = ",
                    p.OC, ")");
  TORCH_CHECK_VALUE(ICg * groups == p.IC, op, ": expected input with ", ICg * groups,
                    " channels (weight.size(1) = ", ICg, " times groups = ", groups, "), got ", p.IC, " channels");
  TORCH_CHECK_VALUE(p.KH <= kMax && p.KW <= kMax, op, ": kernel size must be below 2^31");
  p.pH = top;
  p.pW = left;
  p.OH = conv_output_size(p.H, p.KH, p.sH, top, bottom, p.dH);
  p.OW = conv_output_size(p.W, p.KW, p.sW, left, right, p.dW);
  TORCH_CHECK_VALUE(p.OH >= 1 && p.OW >= 1, op, ": the kernel ", pair_str(p.KH, p.KW), " with dilation ",
                    pair_str(p.dH, p.dW), " spans ", pair_str((p.KH - 1) * p.dH + 1, (p.KW - 1) * p.dW + 1),
                    ", larger than the padded input ", pair_str(p.H + top + bottom, p.W + left + right));

  r.fmt = r.batched ? input.suggest_memory_format() : at::MemoryFormat::Contiguous;
  if (r.fmt != at::MemoryFormat::ChannelsLast) r.fmt = at::MemoryFormat::Contiguous;
  r.input = x.contiguous(r.fmt);
  r.weight = weight.contiguous();
  p.dtype = to_dtype(input.scalar_type());
  p.layout = layout_of(r.fmt);
  p.num_threads = num_threads();
  r.p = p;
  return r;
}

at::Tensor unbatch(const Prepared& r, const at::Tensor& t) { return r.batched ? t : t.squeeze(0); }

// grad_output must have the forward output's shape; it is brought into the input's layout.
at::Tensor prepare_grad(const char* op, const Prepared& r, const at::Tensor& input, const at::Tensor& grad_output) {
  check_same(op, "grad_output", grad_output, "input", input);
  TORCH_CHECK_VALUE(grad_output.layout() == at::kStrided, op, ": grad_output must be a dense (strided) tensor");
  const std::vector<int64_t> want{r.p.N, r.p.OC, r.p.OH, r.p.OW};
  const at::IntArrayRef want_ref = r.batched ? at::IntArrayRef(want) : at::IntArrayRef(want).slice(1);
  TORCH_CHECK_VALUE(grad_output.sizes() == want_ref, op, ": grad_output has shape ", grad_output.sizes(),
                    " but the forward output has shape ", want_ref);
  const at::Tensor g = r.batched ? grad_output : grad_output.unsqueeze(0);
  return g.contiguous(r.fmt);
}

}  // namespace

at::Tensor conv2d(const ConvKernel& kernel, const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                  at::IntArrayRef dilation, int64_t groups) {
  const char* op = "conv2d";
  Prepared r = prepare(op, input, weight, stride, padding, dilation, groups);
  at::Tensor b;
  if (bias.has_value() && bias->defined()) {
    check_same(op, "bias", *bias, "input", input);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == r.p.OC, op, ": expected bias of shape (", r.p.OC,
                      ",), got shape ", bias->sizes());
    b = bias->contiguous();
  }
  at::Tensor out =
      empty_activation({r.p.N, r.p.OC, r.p.OH, r.p.OW}, r.input.options().memory_format(r.fmt));
  if (out.numel() > 0) {
    r.p.input = r.input.const_data_ptr();
    r.p.weight = r.weight.const_data_ptr();
    r.p.bias = b.defined() ? b.const_data_ptr() : nullptr;
    r.p.output = out.mutable_data_ptr();
    run_kernel([&] { kernel(r.p); });
  }
  return unbatch(r, out);
}

at::Tensor conv2d_backward_input(const ConvKernel& kernel, const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, int64_t groups) {
  const char* op = "conv2d_backward_input";
  Prepared r = prepare(op, input, weight, stride, padding, dilation, groups);
  at::Tensor g = prepare_grad(op, r, input, grad_output);
  at::Tensor gin = empty_activation(r.input.sizes(), r.input.options().memory_format(r.fmt));
  if (gin.numel() > 0) {
    r.p.grad_output = g.const_data_ptr();
    r.p.weight = r.weight.const_data_ptr();
    r.p.grad_input = gin.mutable_data_ptr();
    run_kernel([&] { kernel(r.p); });
  }
  return unbatch(r, gin);
}

std::tuple<at::Tensor, at::Tensor> conv2d_backward_weight(const ConvKernel& kernel, const at::Tensor& grad_output,
                                                          const at::Tensor& input, const at::Tensor& weight,
                                                          at::IntArrayRef stride, at::IntArrayRef padding,
                                                          at::IntArrayRef dilation, int64_t groups, bool bias_grad) {
  const char* op = "conv2d_backward_weight";
  Prepared r = prepare(op, input, weight, stride, padding, dilation, groups);
  at::Tensor g = prepare_grad(op, r, input, grad_output);
  at::Tensor gw = at::empty(r.weight.sizes(), r.weight.options());
  at::Tensor gb = at::empty({bias_grad ? r.p.OC : 0}, r.weight.options());
  r.p.input = r.input.const_data_ptr();
  r.p.grad_output = g.const_data_ptr();
  r.p.grad_weight = gw.mutable_data_ptr();
  r.p.grad_bias = bias_grad ? gb.mutable_data_ptr() : nullptr;
  run_kernel([&] { kernel(r.p); });
  return {gw, gb};
}

}  // namespace bigmodel::binding

TORCH_LIBRARY_IMPL(bigmodel, CPU, m) {
  using namespace bigmodel;
  m.impl("conv2d", binding::bind(&binding::conv2d, cpu::conv2d_forward));
  m.impl("conv2d_backward_input", binding::bind(&binding::conv2d_backward_input, cpu::conv2d_backward_input));
  m.impl("conv2d_backward_weight", binding::bind(&binding::conv2d_backward_weight, cpu::conv2d_backward_weight));
}
