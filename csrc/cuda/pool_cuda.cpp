// CUDA registration of the pooling ops: the checks, layouts and allocation shared with the CPU
// (csrc/pool.cpp), with the kernels of kernels/cuda/pool.cu launched on torch's current stream
// of the inputs' device.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "pool_binding.h"

namespace {

using namespace bigmodel;

using CudaPoolKernel = void (*)(const Pool2dParams&, void*);

// A PoolKernel that launches `fn` on the current stream of the current device (set by the
// guard in each op below).
binding::PoolKernel on_current_stream(CudaPoolKernel fn) {
  return [fn](const Pool2dParams& p) { fn(p, c10::cuda::getCurrentCUDAStream().stream()); };
}

// The device to run on: that of the first CUDA tensor. The dispatcher sends a call here when any
// tensor argument is on CUDA; if another one is elsewhere, the shared checks reject the call
// with a message naming both devices.
std::optional<c10::Device> cuda_device(const at::Tensor& a, const at::Tensor& b = at::Tensor()) {
  if (a.defined() && a.is_cuda()) return a.device();
  if (b.defined() && b.is_cuda()) return b.device();
  return std::nullopt;
}

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  m.impl("max_pool2d", [](const at::Tensor& self, at::IntArrayRef k, at::IntArrayRef s, at::IntArrayRef p,
                          at::IntArrayRef d, bool ceil) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device(self));
    return binding::max_pool2d(self, k, s, p, d, ceil, on_current_stream(cuda::max_pool2d_forward));
  });
  m.impl("max_pool2d_with_indices", [](const at::Tensor& self, at::IntArrayRef k, at::IntArrayRef s,
                                       at::IntArrayRef p, at::IntArrayRef d, bool ceil) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device(self));
    return binding::max_pool2d_with_indices(self, k, s, p, d, ceil, on_current_stream(cuda::max_pool2d_forward));
  });
  m.impl("max_pool2d_backward", [](const at::Tensor& g, const at::Tensor& self, at::IntArrayRef k,
                                   at::IntArrayRef s, at::IntArrayRef p, at::IntArrayRef d, bool ceil) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device(self, g));
    return binding::max_pool2d_backward(g, self, k, s, p, d, ceil, on_current_stream(cuda::max_pool2d_backward));
  });
  m.impl("avg_pool2d", [](const at::Tensor& self, at::IntArrayRef k, at::IntArrayRef s, at::IntArrayRef p,
                          bool ceil, bool cip, std::optional<int64_t> div) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device(self));
    return binding::avg_pool2d(self, k, s, p, ceil, cip, div, on_current_stream(cuda::avg_pool2d_forward));
  });
  m.impl("avg_pool2d_backward", [](const at::Tensor& g, const at::Tensor& self, at::IntArrayRef k,
                                   at::IntArrayRef s, at::IntArrayRef p, bool ceil, bool cip,
                                   std::optional<int64_t> div) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device(self, g));
    return binding::avg_pool2d_backward(g, self, k, s, p, ceil, cip, div,
                                        on_current_stream(cuda::avg_pool2d_backward));
  });
}

}  // namespace
