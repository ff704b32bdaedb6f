// The one SIMT GEMM tile of the CUDA kernels (CUDA cores, no tensor cores), shared by the LSTM's
// strided GEMMs (lstm.cu) and the convolution's implicit GEMMs (conv.cu, v1 and every dtype
// without tensor cores). A block of kGemmThreads threads computes the kGemmBM x kGemmBN tile of
// C at (m0, n0) over the reduction range [k_begin, k_end), in steps of kGemmBK through shared
// memory; thread tid = ty * 16 + tx owns C rows m0 + ty + 16 i and columns n0 + tx + 16 j
// (i, j < 4), so that a warp reads one broadcast A value and 16 consecutive B values per step
// (no bank conflicts; the +1 row padding keeps the transposed stores conflict-free as well).
//
// The problem is an `Op`, which says how to read the operands and where C goes:
//   Acc a(int64_t m, int64_t k) const;  Acc b(int64_t k, int64_t n) const;  (called in range only)
//   void store(int64_t m, int64_t n, Acc v) const;                           (the epilogue)
//   bool a_k_fast, b_n_fast;  which index consecutive threads walk when loading A and B, so that
//                              global loads coalesce along the operand's unit-stride dimension.
// The three phases are __host__ __device__ so that tests/cuda/ can run them on the CPU.
#pragma once

#include "cuda/common.cuh"

namespace bigmodel::cuda {

constexpr int kGemmBM = 64, kGemmBN = 64, kGemmBK = 16, kGemmThreads = 256;
constexpr int kGemmTM = 4, kGemmTN = 4;  // per-thread outputs (TM x TN)

template <typename Acc>
struct GemmTiles {
  Acc As[kGemmBK][kGemmBM + 1];  // As[kk][mm] = A(m0 + mm, k0 + kk)
  Acc Bs[kGemmBK][kGemmBN + 1];  // Bs[kk][nn] = B(k0 + kk, n0 + nn)
};

template <typename Acc>
using GemmFrag = Acc[kGemmTM][kGemmTN];

// The block's C tile at (m0, n0) of an M x N product, reducing over k < k_end.
struct GemmBlock {
  int64_t M, N, m0, n0, k_end;
};

// Load phase of step k0: thread tid stores 4 of the A and 4 of the B elements of the step;
// out-of-range elements are zeros.
template <typename Acc, typename Op>
BIGMODEL_HD void gemm_load(const Op& op, const GemmBlock& t, int64_t k0, GemmTiles<Acc>& sm, int tid) {
  for (int l = 0; l < (kGemmBM * kGemmBK) / kGemmThreads; ++l) {
    const int e = tid + l * kGemmThreads;
    const int mm = op.a_k_fast ? e / kGemmBK : e % kGemmBM, kk = op.a_k_fast ? e % kGemmBK : e / kGemmBM;
    const int64_t m = t.m0 + mm, k = k0 + kk;
    sm.As[kk][mm] = (m < t.M && k < t.k_end) ? Acc(op.a(m, k)) : Acc(0);
  }
  for (int l = 0; l < (kGemmBK * kGemmBN) / kGemmThreads; ++l) {
    const int e = tid + l * kGemmThreads;
    const int nn = op.b_n_fast ? e % kGemmBN : e / kGemmBK, kk = op.b_n_fast ? e / kGemmBN : e % kGemmBK;
    const int64_t k = k0 + kk, n = t.n0 + nn;
    sm.Bs[kk][nn] = (k < t.k_end && n < t.N) ? Acc(op.b(k, n)) : Acc(0);
  }
}

// Accumulate phase: acc[i][j] += sum_kk As[kk][ty + 16 i] * Bs[kk][tx + 16 j].
template <typename Acc>
BIGMODEL_HD void gemm_accumulate(const GemmTiles<Acc>& sm, int tid, GemmFrag<Acc>& acc) {
  const int tx = tid % 16, ty = tid / 16;
#pragma unroll
  for (int kk = 0; kk < kGemmBK; ++kk) {
    Acc av[kGemmTM], bv[kGemmTN];
#pragma unroll
    for (int i = 0; i < kGemmTM; ++i) av[i] = sm.As[kk][ty + 16 * i];
#pragma unroll
    for (int j = 0; j < kGemmTN; ++j) bv[j] = sm.Bs[kk][tx + 16 * j];
#pragma unroll
    for (int i = 0; i < kGemmTM; ++i)
#pragma unroll
      for (int j = 0; j < kGemmTN; ++j) acc[i][j] += av[i] * bv[j];
  }
}

// Store phase: op.store for this thread's outputs inside M x N.
template <typename Acc, typename Op>
BIGMODEL_HD void gemm_store(const Op& op, const GemmBlock& t, const GemmFrag<Acc>& acc, int tid) {
  const int tx = tid % 16, ty = tid / 16;
  for (int i = 0; i < kGemmTM; ++i) {
    const int64_t m = t.m0 + ty + 16 * i;
    if (m >= t.M) continue;
    for (int j = 0; j < kGemmTN; ++j) {
      const int64_t n = t.n0 + tx + 16 * j;
      if (n < t.N) op.store(m, n, acc[i][j]);
    }
  }
}

template <typename Acc>
BIGMODEL_HD void gemm_zero(GemmFrag<Acc>& acc) {
#pragma unroll
  for (int i = 0; i < kGemmTM; ++i)
#pragma unroll
    for (int j = 0; j < kGemmTN; ++j) acc[i][j] = Acc(0);
}

#ifndef BIGMODEL_CUDA_THREAD_EMULATION
// The whole block algorithm, called by every thread of a kGemmThreads-thread block.
template <typename Acc, typename Op>
__device__ __forceinline__ void gemm_block(const Op& op, const GemmBlock& t, int64_t k_begin) {
  __shared__ GemmTiles<Acc> sm;
  const int tid = threadIdx.x;
  GemmFrag<Acc> acc;
  gemm_zero(acc);
  for (int64_t k0 = k_begin; k0 < t.k_end; k0 += kGemmBK) {
    gemm_load(op, t, k0, sm, tid);
    __syncthreads();
    gemm_accumulate(sm, tid, acc);
    __syncthreads();
  }
  gemm_store(op, t, acc, tid);
}
#endif

}  // namespace bigmodel::cuda
