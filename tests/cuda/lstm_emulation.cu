// Test harness: runs kernels/cuda/lstm.cu on the host. The file is included with
// BIGMODEL_CUDA_EMULATION, which leaves its two launchers (for_each, gemm) to be defined here:
// for_each runs a pointwise body for every element in turn, and gemm runs the SIMT GEMM tile's
// per-thread phases for every block (gemm_emulation.h). Everything else - the host orchestration
// of the steps, the GEMM operand strides, the index math and the dtype conversions - is the code the GPU runs.
// tests/lstm/test_lstm_cuda_emulated.py builds this with nvcc and calls it through ctypes. Not part of
// the package.
#define BIGMODEL_CUDA_EMULATION 1
#include <cstdio>
#include <vector>

#include "cuda/lstm.cu"
#include "gemm_emulation.h"

namespace bigmodel::cuda {
namespace {

template <typename F>
void for_each(int64_t n, const F& f, cudaStream_t, const char*) {
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <typename TA, typename TB, typename TC>
void gemm(const GemmArgs<TA, TB, TC>& g, cudaStream_t, const char*) {
  if (g.M <= 0 || g.N <= 0) return;
  const StridedGemm<TA, TB, TC> op(g);
  for (int64_t mt = 0; mt < ceil_div(g.M, kGemmBM); ++mt)
    for (int64_t nt = 0; nt < ceil_div(g.N, kGemmBN); ++nt) emulate_gemm_block(op, op.block(mt, nt), 0);
}

}  // namespace
}  // namespace bigmodel::cuda

// sizes = {dtype, T, B, I, H, reverse, has_bias}; lengths: B values or null.
// ptrs (in order): input, h0, c0, w_ih, w_hh, b_ih, b_hh, output, h_n, c_n, gates, cells,
// grad_output, grad_h_n, grad_c_n, grad_gates, grad_input, grad_h0, grad_c0, grad_w_ih,
// grad_w_hh, grad_bias, workspace. Returns 0, or 1 after printing the exception.
extern "C" int bigmodel_lstm_emulate(int backward, const int64_t* sizes, const int64_t* lengths, void** ptrs) {
  using namespace bigmodel;
  LstmParams p;
  p.dtype = static_cast<DType>(sizes[0]);
  p.work_dtype = p.dtype == DType::f64 ? DType::f64 : DType::f32;
  p.T = sizes[1], p.B = sizes[2], p.I = sizes[3], p.H = sizes[4];
  p.reverse = sizes[5] != 0;
  p.has_bias = sizes[6] != 0;
  p.lengths = lengths;
  p.input = ptrs[0], p.h0 = ptrs[1], p.c0 = ptrs[2], p.w_ih = ptrs[3], p.w_hh = ptrs[4];
  p.b_ih = ptrs[5], p.b_hh = ptrs[6];
  p.output = ptrs[7], p.h_n = ptrs[8], p.c_n = ptrs[9], p.gates = ptrs[10], p.cells = ptrs[11];
  p.grad_output = ptrs[12], p.grad_h_n = ptrs[13], p.grad_c_n = ptrs[14], p.grad_gates = ptrs[15];
  p.grad_input = ptrs[16], p.grad_h0 = ptrs[17], p.grad_c0 = ptrs[18];
  p.grad_w_ih = ptrs[19], p.grad_w_hh = ptrs[20], p.grad_bias = ptrs[21];
  try {
    if (backward)
      cuda::lstm_backward(p, ptrs[22], nullptr);
    else
      cuda::lstm_forward(p, ptrs[22], nullptr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

extern "C" int64_t bigmodel_lstm_workspace_bytes(const int64_t* sizes, int backward) {
  bigmodel::LstmParams p;
  p.dtype = static_cast<bigmodel::DType>(sizes[0]);
  p.work_dtype = p.dtype == bigmodel::DType::f64 ? bigmodel::DType::f64 : bigmodel::DType::f32;
  p.T = sizes[1], p.B = sizes[2], p.I = sizes[3], p.H = sizes[4];
  return bigmodel::cuda::lstm_workspace_bytes(p, backward != 0);
}
