// CUDA registration of the LSTM ops: the checks and allocation shared with the CPU
// (csrc/lstm.cpp), with the kernels of kernels/cuda/lstm.cu launched on torch's current stream
// of the input's device. Workspace comes from torch's caching allocator.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "lstm_binding.h"

namespace {

using namespace bigmodel;

// A LstmKernel that allocates the kernel's workspace on the input's device and launches on the
// current stream (the guard in each op below has made the input's device current).
binding::LstmKernel on_current_stream(bool backward) {
  return [backward](const LstmParams& p) {
    const c10::Device device(c10::DeviceType::CUDA, c10::cuda::current_device());
    at::Tensor ws = at::empty({cuda::lstm_workspace_bytes(p, backward)}, at::TensorOptions().dtype(at::kByte).device(device));
    void* stream = c10::cuda::getCurrentCUDAStream().stream();
    if (backward)
      cuda::lstm_backward(p, ws.mutable_data_ptr(), stream);
    else
      cuda::lstm_forward(p, ws.mutable_data_ptr(), stream);
  };
}

std::optional<c10::Device> cuda_device(const at::Tensor& t) {
  if (t.defined() && t.is_cuda()) return t.device();
  return std::nullopt;
}

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  m.impl("lstm", [](const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                    const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                    const std::optional<at::Tensor>& b_hh, bool reverse, const std::optional<at::Tensor>& lengths,
                    bool save_for_backward) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device(input));
    return binding::lstm(input, hx, cx, w_ih, w_hh, b_ih, b_hh, reverse, lengths, save_for_backward,
                         on_current_stream(false));
  });
  m.impl("lstm_backward",
         [](const std::optional<at::Tensor>& grad_output, const std::optional<at::Tensor>& grad_h_n,
            const std::optional<at::Tensor>& grad_c_n, const at::Tensor& input, const at::Tensor& hx,
            const at::Tensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& output,
            const at::Tensor& gates, const at::Tensor& cells, bool reverse, const std::optional<at::Tensor>& lengths) {
           const c10::cuda::OptionalCUDAGuard guard(cuda_device(input));
           return binding::lstm_backward(grad_output, grad_h_n, grad_c_n, input, hx, cx, w_ih, w_hh, output, gates,
                                         cells, reverse, lengths, on_current_stream(true));
         });
  m.impl("lstm_cell", [](const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                         const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                         const std::optional<at::Tensor>& b_hh) {
    const c10::cuda::OptionalCUDAGuard guard(cuda_device(input));
    return binding::lstm_cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh, on_current_stream(false));
  });
}

}  // namespace
