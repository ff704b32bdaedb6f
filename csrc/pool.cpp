// Pooling ops: checks, layouts and allocation (shared with CUDA), plus the CPU registration.
#include <torch/library.h>

#include <limits>

#include "pool_binding.h"

namespace bigmodel::binding {
namespace {

enum class Kind { max, avg };

// Everything a pooling call needs after validation: the 4-D input contiguous in its layout, and
// the Params with sizes, window and threads filled in (pointers are set by the caller).
struct Prepared {
  at::Tensor input;  // 4-D
  at::MemoryFormat fmt;
  bool batched;
  Pool2dParams p;
};

Prepared prepare(const char* op, Kind kind, const at::Tensor& self, at::IntArrayRef kernel_size,
                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode,
                 bool count_include_pad, std::optional<int64_t> divisor_override) {
  TORCH_CHECK_VALUE(self.dim() == 3 || self.dim() == 4, op,
                    ": expected input of shape (C, H, W) or (N, C, H, W), got a ", self.dim(),
                    "-D tensor of shape ", self.sizes());
  TORCH_CHECK_VALUE(self.layout() == at::kStrided, op, ": input must be a dense (strided) tensor");
  check_float_dtype(op, "input", self);
  const int64_t off = self.dim() - 3;
  TORCH_CHECK_VALUE(self.size(off) > 0 && self.size(off + 1) > 0 && self.size(off + 2) > 0, op,
                    ": input has a zero-size channel or spatial dimension (shape ", self.sizes(),
                    "); only the batch dimension may be 0");

  Pool2dParams p;
  two_ints(op, "kernel_size", kernel_size, p.kH, p.kW);
  if (stride.empty()) {
    p.sH = p.kH;
    p.sW = p.kW;
  } else {
    two_ints(op, "stride", stride, p.sH, p.sW);
  }
  two_ints(op, "padding", padding, p.pH, p.pW);
  two_ints(op, "dilation", dilation, p.dH, p.dW);
  TORCH_CHECK_VALUE(p.kH > 0 && p.kW > 0, op, ": kernel_size must be positive, got ", pair_str(p.kH, p.kW));
  TORCH_CHECK_VALUE(p.sH > 0 && p.sW > 0, op, ": stride must be positive, got ", pair_str(p.sH, p.sW));
  TORCH_CHECK_VALUE(p.dH > 0 && p.dW > 0, op, ": dilation must be positive, got ", pair_str(p.dH, p.dW));
  TORCH_CHECK_VALUE(p.pH >= 0 && p.pW >= 0, op, ": padding must be non-negative, got ", pair_str(p.pH, p.pW));
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  TORCH_CHECK_VALUE(p.kH <= kMax && p.kW <= kMax && p.sH <= kMax && p.sW <= kMax && p.pH <= kMax &&
                        p.pW <= kMax && p.dH <= kMax && p.dW <= kMax,
                    op, ": kernel_size, stride, padding and dilation must be below 2^31");
  // torch's rule for max_pool2d_with_indices (what training and CUDA use) and avg_pool2d: at most
  // half the kernel size, dilation not counted.
  TORCH_CHECK_VALUE(p.pH <= p.kH / 2 && p.pW <= p.kW / 2, op, ": padding ", pair_str(p.pH, p.pW),
                    " must be at most half of kernel_size ", pair_str(p.kH, p.kW));
  if (kind == Kind::avg) {
    TORCH_CHECK_VALUE(!divisor_override.has_value() || *divisor_override != 0, op,
                      ": divisor_override must not be zero");
    p.count_include_pad = count_include_pad;
    p.divisor_override = divisor_override.value_or(0);
  }

  Prepared r;
  r.batched = self.dim() == 4;
  at::Tensor x = r.batched ? self : self.unsqueeze(0);
  r.fmt = r.batched ? self.suggest_memory_format() : at::MemoryFormat::Contiguous;
  r.input = x.contiguous(r.fmt);
  p.N = x.size(0);
  p.C = x.size(1);
  p.H = x.size(2);
  p.W = x.size(3);
  p.OH = pool_output_size(p.H, p.kH, p.sH, p.pH, p.dH, ceil_mode);
  p.OW = pool_output_size(p.W, p.kW, p.sW, p.pW, p.dW, ceil_mode);
  TORCH_CHECK_VALUE(p.OH >= 1 && p.OW >= 1, op, ": the output would be empty: input size ", pair_str(p.H, p.W),
                    " with kernel_size ", pair_str(p.kH, p.kW), ", stride ", pair_str(p.sH, p.sW), ", padding ",
                    pair_str(p.pH, p.pW), " and dilation ", pair_str(p.dH, p.dW), " gives output size ",
                    pair_str(p.OH, p.OW), " (is the kernel larger than the padded input?)");
  p.dtype = to_dtype(self.scalar_type());
  p.layout = layout_of(r.fmt);
  p.num_threads = num_threads();
  r.p = p;
  return r;
}

at::Tensor new_output(const Prepared& r, at::ScalarType dtype) {
  return empty_activation({r.p.N, r.p.C, r.p.OH, r.p.OW}, r.input.options().dtype(dtype).memory_format(r.fmt));
}

at::Tensor unbatch(const Prepared& r, const at::Tensor& t) { return r.batched ? t : t.squeeze(0); }

// grad_output must have the forward output's shape; it is brought into the input's layout.
at::Tensor prepare_grad(const char* op, const Prepared& r, const at::Tensor& self, const at::Tensor& grad_output) {
  check_same(op, "grad_output", grad_output, "input", self);
  at::Tensor g = r.batched ? grad_output : grad_output.unsqueeze(0);
  const std::vector<int64_t> want{r.p.N, r.p.C, r.p.OH, r.p.OW};
  TORCH_CHECK_VALUE(grad_output.dim() == self.dim() && g.sizes() == at::IntArrayRef(want), op,
                    ": grad_output has shape ", grad_output.sizes(), " but the forward output has shape ",
                    r.batched ? at::IntArrayRef(want) : at::IntArrayRef(want).slice(1));
  return g.contiguous(r.fmt);
}

// Runs a forward: the output (and, for max_pool2d_with_indices, torch's indices) in the input's
// layout.
std::tuple<at::Tensor, at::Tensor> run_forward(const PoolKernel& kernel, Prepared& r, at::ScalarType dtype,
                                               bool with_indices) {
  at::Tensor out = new_output(r, dtype);
  at::Tensor idx = with_indices ? new_output(r, at::kLong) : at::Tensor();
  if (out.numel() > 0) {
    r.p.input = r.input.const_data_ptr();
    r.p.output = out.mutable_data_ptr();
    r.p.indices = with_indices ? idx.mutable_data_ptr<int64_t>() : nullptr;
    run_kernel([&] { kernel(r.p); });
  }
  return {unbatch(r, out), with_indices ? unbatch(r, idx) : idx};
}

// Runs a backward: the gradient w.r.t. the input, in its layout. Max pooling re-reads the input to
// find each window's argmax; average pooling does not need it.
at::Tensor run_backward(const PoolKernel& kernel, const char* op, Prepared& r, const at::Tensor& self,
                        const at::Tensor& grad_output, bool reads_input) {
  at::Tensor g = prepare_grad(op, r, self, grad_output);
  at::Tensor gin = empty_activation(r.input.sizes(), r.input.options().memory_format(r.fmt));
  if (gin.numel() > 0) {
    if (reads_input) r.p.input = r.input.const_data_ptr();
    r.p.grad_output = g.const_data_ptr();
    r.p.grad_input = gin.mutable_data_ptr();
    run_kernel([&] { kernel(r.p); });
  }
  return unbatch(r, gin);
}

const int64_t kNoDilation[] = {1};

}  // namespace

at::Tensor max_pool2d(const PoolKernel& kernel, const at::Tensor& self, at::IntArrayRef kernel_size,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  Prepared r = prepare("max_pool2d", Kind::max, self, kernel_size, stride, padding, dilation, ceil_mode, true,
                       std::nullopt);
  return std::get<0>(run_forward(kernel, r, self.scalar_type(), false));
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const PoolKernel& kernel, const at::Tensor& self,
                                                           at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                                           at::IntArrayRef padding, at::IntArrayRef dilation,
                                                           bool ceil_mode) {
  Prepared r = prepare("max_pool2d_with_indices", Kind::max, self, kernel_size, stride, padding, dilation,
                       ceil_mode, true, std::nullopt);
  return run_forward(kernel, r, self.scalar_type(), true);
}

at::Tensor max_pool2d_backward(const PoolKernel& kernel, const at::Tensor& grad_output, const at::Tensor& self,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode) {
  const char* op = "max_pool2d_backward";
  Prepared r = prepare(op, Kind::max, self, kernel_size, stride, padding, dilation, ceil_mode, true, std::nullopt);
  return run_backward(kernel, op, r, self, grad_output, true);
}

at::Tensor avg_pool2d(const PoolKernel& kernel, const at::Tensor& self, at::IntArrayRef kernel_size,
                      at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      std::optional<int64_t> divisor_override) {
  Prepared r = prepare("avg_pool2d", Kind::avg, self, kernel_size, stride, padding, kNoDilation, ceil_mode,
                       count_include_pad, divisor_override);
  return std::get<0>(run_forward(kernel, r, self.scalar_type(), false));
}

at::Tensor avg_pool2d_backward(const PoolKernel& kernel, const at::Tensor& grad_output, const at::Tensor& self,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
  const char* op = "avg_pool2d_backward";
  Prepared r = prepare(op, Kind::avg, self, kernel_size, stride, padding, kNoDilation, ceil_mode,
                       count_include_pad, divisor_override);
  return run_backward(kernel, op, r, self, grad_output, false);
}

}  // namespace bigmodel::binding

TORCH_LIBRARY_IMPL(bigmodel, CPU, m) {
  using namespace bigmodel;
  m.impl("max_pool2d", binding::bind(&binding::max_pool2d, cpu::max_pool2d_forward));
  m.impl("max_pool2d_with_indices", binding::bind(&binding::max_pool2d_with_indices, cpu::max_pool2d_forward));
  m.impl("max_pool2d_backward", binding::bind(&binding::max_pool2d_backward, cpu::max_pool2d_backward));
  m.impl("avg_pool2d", binding::bind(&binding::avg_pool2d, cpu::avg_pool2d_forward));
  m.impl("avg_pool2d_backward", binding::bind(&binding::avg_pool2d_backward, cpu::avg_pool2d_backward));
}
