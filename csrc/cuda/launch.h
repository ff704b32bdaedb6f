// The CUDA half of the registration pattern (csrc/registration.cpp): the device guard every CUDA
// impl opens, and adapters that turn a kernels/cuda launcher into the backend's Kernel<Params>.
//
//   m.impl("max_pool2d", binding::bind_cuda(&binding::max_pool2d, launch(cuda::max_pool2d_forward)));
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>
#include <type_traits>

#include "common.h"

namespace bigmodel::binding {

// The device of the first CUDA tensor among an op's arguments. The dispatcher sends a call to the
// CUDA impl when any tensor argument is on CUDA; if another is elsewhere, the shared checks
// reject the call with a message naming both devices.
inline void first_cuda_device(std::optional<c10::Device>& d, const at::Tensor& t) {
  if (!d && t.defined() && t.is_cuda()) d = t.device();
}
inline void first_cuda_device(std::optional<c10::Device>& d, const std::optional<at::Tensor>& t) {
  if (t.has_value()) first_cuda_device(d, *t);
}
template <typename T>
void first_cuda_device(std::optional<c10::Device>&, const T&) {}  // not a tensor

template <typename... Args>
std::optional<c10::Device> cuda_device(const Args&... args) {
  std::optional<c10::Device> d;
  (first_cuda_device(d, args), ...);
  return d;
}

// Makes that device current for the call, so that the launches below use its current stream and
// its caching allocator.
struct CudaDeviceGuard {
  template <typename... Args>
  explicit CudaDeviceGuard(const Args&... args) : guard(cuda_device(args...)) {}
  c10::cuda::OptionalCUDAGuard guard;
};

template <typename R, typename K, typename... Args>
auto bind_cuda(R (*op)(const K&, Args...), std::type_identity_t<K> kernel) {
  return ::bigmodel::binding::bind<CudaDeviceGuard>(op, std::move(kernel));  // qualified: not std::bind by ADL
}

inline void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// launcher(p, stream) on the current stream.
template <typename Params>
Kernel<Params> launch(void (*launcher)(const Params&, void*)) {
  return [launcher](const Params& p) { launcher(p, current_stream()); };
}

// launcher(p, workspace, stream), with a workspace of workspace_bytes(p) bytes (nullptr for 0)
// from torch's caching allocator. The allocator keeps the block reserved for this stream until
// the kernels that use it have run, so releasing it when the call returns is safe.
template <typename Params>
Kernel<Params> launch(int64_t (*workspace_bytes)(const Params&), void (*launcher)(const Params&, void*, void*)) {
  return [workspace_bytes, launcher](const Params& p) {
    const int64_t bytes = workspace_bytes(p);
    at::Tensor workspace;
    if (bytes > 0) {
      const c10::Device device(c10::DeviceType::CUDA, c10::cuda::current_device());
      workspace = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device));
    }
    launcher(p, workspace.defined() ? workspace.mutable_data_ptr() : nullptr, current_stream());
  };
}

}  // namespace bigmodel::binding
