// CUDA registration of the convolution ops: the checks, layouts and allocation shared with the
// CPU (csrc/conv.cpp), with the kernels of kernels/cuda/conv.cu launched on torch's current stream
// of the inputs' device. The weight gradient's split-K workspace comes from torch's allocator.
#include <torch/library.h>

#include "conv_binding.h"
#include "cuda/launch.h"

namespace {

using namespace bigmodel;

// conv.cu takes the weight gradient's workspace in the Params.
void backward_weight(const Conv2dParams& params, void* workspace, void* stream) {
  Conv2dParams p = params;
  p.workspace = workspace;
  cuda::conv2d_backward_weight(p, stream);
}

}  // namespace

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  using namespace bigmodel;
  using binding::bind_cuda, binding::launch;
  m.impl("conv2d", bind_cuda(&binding::conv2d, launch(cuda::conv2d_forward)));
  m.impl("conv2d_backward_input", bind_cuda(&binding::conv2d_backward_input, launch(cuda::conv2d_backward_input)));
  m.impl("conv2d_backward_weight",
         bind_cuda(&binding::conv2d_backward_weight,
                   launch(cuda::conv2d_backward_weight_workspace_bytes, backward_weight)));
}
