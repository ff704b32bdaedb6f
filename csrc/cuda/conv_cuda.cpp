// CUDA registration of the convolution ops: the checks, layouts and allocation shared with the
// CPU (csrc/conv.cpp), with the kernels of kernels/cuda/conv.cu launched on torch's current stream
// of the inputs' device. The weight gradient's split-K workspace comes from torch's allocator.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "conv_binding.h"

namespace {

using namespace bigmodel;

using CudaConvKernel = void (*)(const Conv2dParams&, void*);

// A ConvKernel that launches `fn` on the current stream of the current device (set by the guard
// in each op below).
binding::ConvKernel on_current_stream(CudaConvKernel fn) {
  return [fn](const Conv2dParams& p) { fn(p, c10::cuda::getCurrentCUDAStream().stream()); };
}

// The device to run on: that of the first CUDA tensor. The dispatcher sends a call here when any
// tensor argument is on CUDA; if another one is elsewhere, the shared checks reject the call with
// a message naming both devices.
std::optional<c10::Device> cuda_device(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts)
    if (t != nullptr && t->defined() && t->is_cuda()) return t->device();
  return std::nullopt;
}

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  m.impl("conv2d", [](const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device({&input, &weight, bias ? &*bias : nullptr}));
    return binding::conv2d(input, weight, bias, stride, padding, dilation, groups,
                           on_current_stream(cuda::conv2d_forward));
  });
  m.impl("conv2d_backward_input", [](const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                     at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                     int64_t groups) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device({&grad_output, &input, &weight}));
    return binding::conv2d_backward_input(grad_output, input, weight, stride, padding, dilation, groups,
                                          on_current_stream(cuda::conv2d_backward_input));
  });
  m.impl("conv2d_backward_weight", [](const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups, bool bias_grad) {
    const auto device = cuda_device({&grad_output, &input, &weight});
    const c10::cuda::OptionalCUDAGuard guard(device);
    binding::ConvKernel kernel = [device](const Conv2dParams& params) {
      Conv2dParams p = params;
      const int64_t bytes = cuda::conv2d_backward_weight_workspace_bytes(p);
      at::Tensor workspace;
      if (bytes > 0) {
        workspace = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(*device));
        p.workspace = workspace.mutable_data_ptr();
      }
      // The caching allocator keeps the block reserved for this stream until the kernels that
      // use it have run, so releasing `workspace` at the end of this scope is safe.
      cuda::conv2d_backward_weight(p, c10::cuda::getCurrentCUDAStream().stream());
    };
    return binding::conv2d_backward_weight(grad_output, input, weight, stride, padding, dilation, groups, bias_grad,
                                           kernel);
  });
}

}  // namespace
