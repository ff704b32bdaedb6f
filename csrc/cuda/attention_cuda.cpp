// CUDA registration of the attention ops: the checks, broadcasting and allocation shared with
// the CPU (csrc/attention.cpp), with the kernels of kernels/cuda/attention.cu launched on
// torch's current stream of the inputs' device.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "attention_binding.h"

namespace {

using namespace bigmodel;

using CudaAttentionKernel = void (*)(const AttentionParams&, void*);

binding::AttentionKernel on_current_stream(CudaAttentionKernel fn) {
  return [fn](const AttentionParams& p) { fn(p, c10::cuda::getCurrentCUDAStream().stream()); };
}

// The CUDA kernels take float32, float16 and bfloat16 (the shared checks also admit float64,
// which only the CPU kernels run).
void check_cuda_dtype(const char* op, const at::Tensor& q) {
  TORCH_CHECK_TYPE(q.scalar_type() != at::kDouble, op,
                   ": query must be float32, float16 or bfloat16 on CUDA (float64 runs on the CPU only), got ",
                   q.scalar_type());
}

// The device to run on: that of the first CUDA tensor among the inputs. The dispatcher sends a
// call here when any tensor argument is on CUDA; the shared checks then reject mixed devices
// with a message naming both.
std::optional<c10::Device> cuda_device(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts) {
    if (t->defined() && t->is_cuda()) return t->device();
  }
  return std::nullopt;
}

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  m.impl("scaled_dot_product_attention_forward",
         [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& mask,
            double dropout_p, bool is_causal, std::optional<double> scale, bool enable_gqa,
            const std::optional<at::Tensor>& seed) {
           check_cuda_dtype("scaled_dot_product_attention", q);
           const c10::cuda::OptionalCUDAGuard guard(cuda_device({&q, &k, &v}));
           return binding::attention_forward(q, k, v, mask, dropout_p, is_causal, scale, enable_gqa, seed,
                                             on_current_stream(cuda::attention_forward));
         });
  m.impl("scaled_dot_product_attention_backward",
         [](const at::Tensor& go, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
            const at::Tensor& lse, const std::optional<at::Tensor>& mask, double dropout_p, bool is_causal,
            std::optional<double> scale, bool enable_gqa, const std::optional<at::Tensor>& seed) {
           check_cuda_dtype("scaled_dot_product_attention_backward", q);
           const c10::cuda::OptionalCUDAGuard guard(cuda_device({&go, &q, &k, &v}));
           return binding::attention_backward(go, q, k, v, out, lse, mask, dropout_p, is_causal, scale, enable_gqa,
                                              seed, true, on_current_stream(cuda::attention_backward));
         });
}

}  // namespace
