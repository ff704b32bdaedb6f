// CUDA registration of the pooling ops: the checks, layouts and allocation shared with the CPU
// (csrc/pool.cpp), with the kernels of kernels/cuda/pool.cu launched on torch's current stream
// of the inputs' device.
#include <torch/library.h>

#include "cuda/launch.h"
#include "pool_binding.h"

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  using namespace bigmodel;
  using binding::bind_cuda, binding::launch;
  m.impl("max_pool2d", bind_cuda(&binding::max_pool2d, launch(cuda::max_pool2d_forward)));
  m.impl("max_pool2d_with_indices", bind_cuda(&binding::max_pool2d_with_indices, launch(cuda::max_pool2d_forward)));
  m.impl("max_pool2d_backward", bind_cuda(&binding::max_pool2d_backward, launch(cuda::max_pool2d_backward)));
  m.impl("avg_pool2d", bind_cuda(&binding::avg_pool2d, launch(cuda::avg_pool2d_forward)));
  m.impl("avg_pool2d_backward", bind_cuda(&binding::avg_pool2d_backward, launch(cuda::avg_pool2d_backward)));
}
