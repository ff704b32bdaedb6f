// Test harness: one block of kernels/cuda/simt_gemm.cuh's SIMT GEMM tile on the host - its
// per-thread phases (load / accumulate / store) for every thread, in the order the
// __syncthreads() barriers impose. Used by the LSTM and convolution emulations. Not part of the
// package.
#pragma once

#include <vector>

#include "cuda/simt_gemm.cuh"

namespace bigmodel::cuda {

template <typename Op>
void emulate_gemm_block(const Op& op, const GemmBlock& t, int64_t k_begin) {
  using Acc = typename Op::Acc;
  GemmTiles<Acc> sm;
  std::vector<GemmFrag<Acc>> acc(kGemmThreads);
  for (auto& a : acc) gemm_zero(a);
  for (int64_t k0 = k_begin; k0 < t.k_end; k0 += kGemmBK) {
    for (int tid = 0; tid < kGemmThreads; ++tid) gemm_load(op, t, k0, sm, tid);
    for (int tid = 0; tid < kGemmThreads; ++tid) gemm_accumulate(sm, tid, acc[tid]);
  }
  for (int tid = 0; tid < kGemmThreads; ++tid) gemm_store(op, t, acc[tid], tid);
}

}  // namespace bigmodel::cuda
