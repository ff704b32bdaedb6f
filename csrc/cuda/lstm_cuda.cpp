// CUDA registration of the LSTM ops: the checks and allocation shared with the CPU
// (csrc/lstm.cpp), with the kernels of kernels/cuda/lstm.cu launched on torch's current stream
// of the inputs' device. Workspace comes from torch's caching allocator.
#include <torch/library.h>

#include "cuda/launch.h"
#include "lstm_binding.h"

namespace {

using namespace bigmodel;

int64_t forward_workspace(const LstmParams& p) { return cuda::lstm_workspace_bytes(p, false); }
int64_t backward_workspace(const LstmParams& p) { return cuda::lstm_workspace_bytes(p, true); }

}  // namespace

TORCH_LIBRARY_IMPL(bigmodel, CUDA, m) {
  using namespace bigmodel;
  using binding::bind_cuda, binding::launch;
  m.impl("lstm", bind_cuda(&binding::lstm, launch(forward_workspace, cuda::lstm_forward)));
  m.impl("lstm_backward", bind_cuda(&binding::lstm_backward, launch(backward_workspace, cuda::lstm_backward)));
  m.impl("lstm_cell", bind_cuda(&binding::lstm_cell, launch(forward_workspace, cuda::lstm_forward)));
}
