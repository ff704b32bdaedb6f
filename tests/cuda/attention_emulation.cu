// Test harness: the CUDA attention kernels (kernels/cuda/attention_forward.cu and
// attention_backward.cu, unchanged) run on the CPU through thread_emulation.h - one std::thread
// per CUDA thread, real barriers and shuffles, shared memory poisoned with NaN.
// tests/attention/test_attention_cuda_emulated.py compiles this file as host C++ with nvcc and calls it
// through ctypes. Not part of the package.
#include "thread_emulation.h"

#include "cuda/attention_backward.cu"
#include "cuda/attention_forward.cu"

extern "C" {
void emu_forward(const bigmodel::AttentionParams* p) { bigmodel::cuda::attention_forward(*p, nullptr); }
void emu_backward(const bigmodel::AttentionParams* p) { bigmodel::cuda::attention_backward(*p, nullptr); }
unsigned long emu_params_size() { return sizeof(bigmodel::AttentionParams); }
}
