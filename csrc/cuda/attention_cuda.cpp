// CUDA registration of the attention ops: the checks, broadcasting and allocation shared with
// the CPU (csrc/attention.cpp), with the kernels of kernels/cuda/attention.cu launched on torch's
// current stream of the inputs' device. The backward's workspace comes from torch's allocator.
#include <torch/library.h>

#include <algorithm>

#include "attention_binding.h"
#include "cuda/launch.h"

namespace {

using namespace bigmodel;

// The backward's float32 scratch: one value per query row, (B, Hq, L).
int64_t backward_workspace(const AttentionParams& p) {
  return std::max<int64_t>(p.B * p.Hq * p.L, 1) * static_cast<int64_t>(sizeof(float));
}

// attention.cu takes the workspace in the Params.
void backward(const AttentionParams& params, void* workspace, void* stream) {
  AttentionParams p = params;
  p.workspace = workspace;
  cuda::attention_backward(p, stream);
}

}  // namespace

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  using namespace bigmodel;
  using binding::bind_cuda, binding::launch;
  m.impl("scaled_dot_product_attention_forward",
         bind_cuda(&binding::attention_forward, launch(cuda::attention_forward)));
  m.impl("scaled_dot_product_attention_backward",
         bind_cuda(&binding::attention_backward, launch(backward_workspace, backward)));
}
