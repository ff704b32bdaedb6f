// Fused softmax attention on CUDA (FlashAttention-2 style), forward (attention_forward.cu) and
// backward (attention_backward.cu), for float32, float16 and bfloat16 (16-bit types are converted
// to float in shared memory; every sum, the online softmax and the accumulators are float32).
// Semantics, the dropout hash and the fully-masked-row rule: kernels/include/bigmodel/attention.h
// (the same as the CPU kernels, so both devices drop the very same elements for a seed).
//
// Versions: v1 (these files) is SIMT, no tensor cores. Each thread block owns a tile of rows;
// each warp owns ROWS of them and each lane owns the tile's columns lane, lane + 32, ...:
//   forward   block = BQ query rows; loops over key tiles of BK (causal: only tiles a row can
//             see); S = Q K^T from shared memory, masked, row max / sum by warp shuffles, online
//             rescaling of the output accumulator (registers), P written to a per-warp shared
//             buffer and O += P V read back from it. Writes O and logsumexp only.
//   backward  three kernels, no atomics, deterministic:
//             D  = rowsum(dO * O)                     one warp per row
//             dK, dV per key tile (block), looping over the query heads of its group and the
//                query tiles that can see it: recompute P = exp(S - logsumexp), dP = dO V^T,
//                dS = P (dP - D); dV += (P Z)^T dO, dK += scale dS^T Q
//             dQ per query tile, looping over key tiles: dQ += scale dS K
//             The dQ kernel recomputes S and dP (7 matrix products in all instead of
//             FlashAttention-2's 5) in exchange for no atomics and no float32 dQ buffer; both
//             kernels do it with the same two functions below (warp_products, Softmax::p_ds).
// Logits are kept in log2 units (scale * log2(e) folded into one multiplier) so that the
// exponentials are exp2f.
//
// Not yet run on a GPU (none is lent to the project): compiled for sm_80 and sm_90 only, and
// run on the CPU by tests/cuda/attention_emulation.cu. Candidates once one is: tensor-core
// (mma.sync / wgmma) tiles for the 16-bit types, vectorised global loads, cp.async double
// buffering of the K/V tiles.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "bigmodel/attention.h"
#include "cuda/common.cuh"  // Num, launch_kernel, dynamic_smem, dispatch_float, HEADDIM_SWITCH

namespace bigmodel::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return Num<T>::to_acc(v);
}

__device__ __forceinline__ float warp_max(float v) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, off));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// Tile configurations per head-dim bucket D (E and Ev <= D; smaller dims are zero-padded in
// shared memory). ROWS rows per warp keep the per-lane accumulators at about 32 registers.
// FwdCfg: forward and dQ kernels (BK key columns per step); KvCfg: dK/dV kernel (ROWS key rows
// per warp, BQ query columns per step).
template <int D>
struct FwdCfg {
  static constexpr int ROWS = D <= 64 ? 16 : D == 128 ? 8 : 4, WARPS = D == 256 ? 8 : 4, BK = D == 256 ? 32 : 64;
};
template <int D>
struct KvCfg {
  static constexpr int ROWS = D <= 64 ? 8 : D == 128 ? 4 : 2, WARPS = 8, BQ = D == 256 ? 32 : 64;
};

// Block blockIdx.x of a grid over (b * Hq + h, query tile of BQ rows), flattened: its (b, h) row
// bh, first query q0, and the q, k, v, dO of that head (k, v: its kv head under GQA).
template <typename T>
struct QueryBlock {
  int64_t bh, q0, b, h;
  const T *q, *k, *v, *go;
};

template <typename T>
__device__ __forceinline__ QueryBlock<T> query_block(const AttentionParams& p, int64_t n_tiles, int BQ) {
  const int64_t bh = blockIdx.x / n_tiles, b = bh / p.Hq, h = bh % p.Hq, hk = h / (p.Hq / p.Hkv);
  return {bh,
          static_cast<int64_t>(blockIdx.x % n_tiles) * BQ,
          b,
          h,
          static_cast<const T*>(p.query) + b * p.q_sb + h * p.q_sh,
          static_cast<const T*>(p.key) + b * p.k_sb + hk * p.k_sh,
          static_cast<const T*>(p.value) + b * p.v_sb + hk * p.v_sh,
          static_cast<const T*>(p.grad_output) + b * p.go_sb + h * p.go_sh};
}

// What every kernel needs of the softmax: the mask at (b, h, row, col) (whether the key is
// visible and the additive term, log2 units), the logit multiplier and the dropout rule.
template <typename T>
struct Softmax {
  const AttentionParams& p;
  float c;  // scale * log2(e)
  uint32_t threshold;
  float keep_scale;
  bool dropout;

  __device__ __forceinline__ explicit Softmax(const AttentionParams& params)
      : p(params),
        c(static_cast<float>(params.scale) * kLog2e),
        threshold(dropout_threshold(params.dropout_p)),
        keep_scale(params.dropout_p < 1.0 ? static_cast<float>(1.0 / (1.0 - params.dropout_p)) : 0.f),
        dropout(params.dropout_p > 0.0) {}

  // Query i sees key j (bounds, causal, mask); add: the mask's additive term.
  __device__ __forceinline__ bool visible(int64_t b, int64_t h, int64_t i, int64_t j, float& add) const {
    add = 0.f;
    if (j >= p.S || i >= p.L || (p.causal && j > i)) return false;
    if (p.mask_kind == AttentionMask::none) return true;
    const int64_t off = b * p.m_sb + h * p.m_sh + i * p.m_sl + j;
    if (p.mask_kind == AttentionMask::boolean) return static_cast<const uint8_t*>(p.mask)[off] != 0;
    add = to_float(static_cast<const T*>(p.mask)[off]) * kLog2e;
    return true;
  }

  // Backward at (query i, key j) from the raw logit s = q.k, dp = (dO V^T)(i, j), l2 =
  // logsumexp(i) in log2 units, di = D(i) and the row's dropout key: pz = P Z (the dropped,
  // rescaled probability) and ds = P (dP Z - D).
  __device__ __forceinline__ void p_ds(int64_t b, int64_t h, int64_t i, int64_t j, float s, float dp, float l2,
                                       float di, uint32_t key, float& pz, float& ds) const {
    float add;
    const bool ok = l2 != -INFINITY && visible(b, h, i, j, add);
    const float pr = ok ? exp2f(s * c + add - l2) : 0.f;
    float z = 1.f;
    if (dropout) z = ok && dropout_keep(key, j, threshold) ? keep_scale : 0.f;
    pz = pr * z;
    ds = pr * (dp * z - di);
  }
};

// acc[r][cc] = sum_{e < n} rows[r * D + e] * cols[(lane + 32 cc) * (D + 1) + e]: a warp's ROWS
// rows (read whole, broadcast) times the tile's columns (one per lane and cc, padded rows).
template <int ROWS, int NC, int D>
__device__ __forceinline__ void warp_products(const float* rows, const float* cols, int n, int lane,
                                              float (&acc)[ROWS][NC]) {
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
#pragma unroll
    for (int cc = 0; cc < NC; ++cc) acc[r][cc] = 0.f;
  for (int e = 0; e < n; ++e) {
    float cv[NC];
#pragma unroll
    for (int cc = 0; cc < NC; ++cc) cv[cc] = cols[(lane + 32 * cc) * (D + 1) + e];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const float a = rows[r * D + e];
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) acc[r][cc] = fmaf(a, cv[cc], acc[r][cc]);
    }
  }
}

// acc[r][d] += sum_{j < n} coef[r * ld + j] * tile[j * pitch + lane + 32 d]: a warp's ROWS rows
// of per-warp coefficients (P or dS) times a tile's rows, each lane owning columns lane + 32 d.
template <int ROWS, int ND>
__device__ __forceinline__ void warp_accumulate(const float* coef, int ld, const float* tile, int pitch, int n,
                                                int lane, float (&acc)[ROWS][ND]) {
  for (int j = 0; j < n; ++j) {
    float tv[ND];
#pragma unroll
    for (int d = 0; d < ND; ++d) tv[d] = tile[j * pitch + lane + 32 * d];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const float c = coef[r * ld + j];
#pragma unroll
      for (int d = 0; d < ND; ++d) acc[r][d] = fmaf(c, tv[d], acc[r][d]);
    }
  }
}

// dst[r * pitch + e] = mul * src[(row0 + r) * ld + e] for row0 + r < rows and e < cols, else 0,
// for r < R and e < D, by the block's NT threads.
template <int R, int D, int NT, typename T>
__device__ __forceinline__ void load_tile(float* dst, int pitch, const T* src, int64_t ld, int64_t row0,
                                          int64_t rows, int64_t cols, float mul = 1.f) {
  for (int idx = threadIdx.x; idx < R * D; idx += NT) {
    const int r = idx / D, e = idx % D;
    const int64_t row = row0 + r;
    dst[r * pitch + e] = (row < rows && e < cols) ? to_float(src[row * ld + e]) * mul : 0.f;
  }
}

// Calls fn(TypeTag<T>{}, std::integral_constant<int, kHeadDim>{}) for the call's dtype and head-dim
// bucket, after the checks common to forward and backward.
template <typename Fn>
void dispatch_attention(const AttentionParams& p, Fn&& fn) {
  if (p.dtype == DType::f64) {
    throw std::invalid_argument(
        "scaled_dot_product_attention: the CUDA kernels take float32, float16 or bfloat16, not float64");
  }
  const int64_t d = p.E > p.Ev ? p.E : p.Ev;
  if (d > 256) {
    throw std::invalid_argument("scaled_dot_product_attention: the CUDA kernels take head dims up to 256, got E=" +
                                std::to_string(p.E) + " and Ev=" + std::to_string(p.Ev));
  }
  dispatch_float<false>(p.dtype, "scaled_dot_product_attention", [&](auto tag) {
    HEADDIM_SWITCH(d, kHeadDim, [&] { fn(tag, std::integral_constant<int, kHeadDim>{}); });
  });
}

// Blocks of a grid over (rows of b * heads, tiles), flattened on x.
inline unsigned flat_blocks(int64_t blocks) {
  if (blocks > 0x7fffffffLL) throw std::invalid_argument("scaled_dot_product_attention: too many CUDA blocks");
  return static_cast<unsigned>(blocks);
}

}  // namespace
}  // namespace bigmodel::cuda
