// Fused softmax attention on CUDA (FlashAttention-2 style), forward and backward, for float32,
// float16 and bfloat16 (16-bit types are converted to float in shared memory; every sum, the
// online softmax and the accumulators are float32). Semantics, the dropout hash and the
// fully-masked-row rule: kernels/include/bigmodel/attention.h (the same as the CPU kernels, so
// both devices drop the very same elements for a seed).
//
// Versions: v1 (this file) is SIMT, no tensor cores. Each thread block owns a tile of rows;
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
//             FlashAttention-2's 5) in exchange for no atomics and no float32 dQ buffer.
// Logits are kept in log2 units (scale * log2(e) folded into one multiplier) so that the
// exponentials are exp2f.
//
// Not yet run on a GPU (none is lent to the project): compiled for sm_80 and sm_90 only.
// Candidates once one is: tensor-core (mma.sync / wgmma) tiles for the 16-bit types, vectorised
// global loads, cp.async double buffering of the K/V tiles.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bigmodel/attention.h"

namespace bigmodel::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float warp_max(float v) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, off));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// What the kernels need of the mask at (b, h, row, col): whether the key is visible and the
// additive term (log2 units).
template <typename T>
struct MaskView {
  AttentionMask kind;
  const void* data;
  int64_t sb, sh, sl;

  __device__ __forceinline__ bool apply(int64_t b, int64_t h, int64_t row, int64_t col, float& add) const {
    add = 0.f;
    if (kind == AttentionMask::none) return true;
    const int64_t off = b * sb + h * sh + row * sl + col;
    if (kind == AttentionMask::boolean) return static_cast<const uint8_t*>(data)[off] != 0;
    add = to_float(static_cast<const T*>(data)[off]) * kLog2e;
    return true;
  }
};

template <typename T>
__device__ __forceinline__ MaskView<T> mask_view(const AttentionParams& p) {
  return {p.mask_kind, p.mask, p.m_sb, p.m_sh, p.m_sl};
}

// Tile configurations per head-dim bucket D (E and Ev <= D; smaller dims are zero-padded in
// shared memory). ROWS rows per warp keep the per-lane accumulators at about 32 registers.
template <int D>
struct FwdCfg;
template <>
struct FwdCfg<32> {
  static constexpr int ROWS = 16, WARPS = 4, BK = 64;
};
template <>
struct FwdCfg<64> {
  static constexpr int ROWS = 16, WARPS = 4, BK = 64;
};
template <>
struct FwdCfg<128> {
  static constexpr int ROWS = 8, WARPS = 4, BK = 64;
};
template <>
struct FwdCfg<256> {
  static constexpr int ROWS = 4, WARPS = 8, BK = 32;
};

template <int D>
struct KvCfg;  // dK/dV kernel: ROWS key rows per warp, BQ query columns per step
template <>
struct KvCfg<32> {
  static constexpr int ROWS = 8, WARPS = 8, BQ = 64;
};
template <>
struct KvCfg<64> {
  static constexpr int ROWS = 8, WARPS = 8, BQ = 64;
};
template <>
struct KvCfg<128> {
  static constexpr int ROWS = 4, WARPS = 8, BQ = 64;
};
template <>
struct KvCfg<256> {
  static constexpr int ROWS = 2, WARPS = 8, BQ = 32;
};

// ---------------------------------------------------------------------------------------------
// Forward. Grid: one block per (b * Hq + h, query tile), flattened. Shared memory (floats):
//   Qs BQ x D (pre-multiplied by scale * log2 e), Ks BK x (D + 1) (padded: lanes read columns),
//   Vs BK x D, Ps WARPS x ROWS x BK.
// q (B, Hq, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev) strided; out (B, Hq, L, Ev) and
// lse (B, Hq, L) contiguous.
// ---------------------------------------------------------------------------------------------
template <typename T, int D>
__global__ void __launch_bounds__(FwdCfg<D>::WARPS * 32)
    attention_forward_kernel(const AttentionParams p, int64_t n_tiles) {
  constexpr int ROWS = FwdCfg<D>::ROWS, WARPS = FwdCfg<D>::WARPS, BK = FwdCfg<D>::BK;
  constexpr int BQ = WARPS * ROWS, NC = BK / 32, ND = D / 32, NT = WARPS * 32;
  extern __shared__ float smem[];
  float* Qs = smem;
  float* Ks = Qs + BQ * D;
  float* Vs = Ks + BK * (D + 1);
  float* Ps = Vs + BK * D;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t bh = blockIdx.x / n_tiles, q0 = (blockIdx.x % n_tiles) * BQ;
  const int64_t b = bh / p.Hq, h = bh % p.Hq, hk = h / (p.Hq / p.Hkv);
  const T* q = static_cast<const T*>(p.query) + b * p.q_sb + h * p.q_sh;
  const T* k = static_cast<const T*>(p.key) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.value) + b * p.v_sb + hk * p.v_sh;
  const MaskView<T> mask = mask_view<T>(p);
  const float c = static_cast<float>(p.scale) * kLog2e;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const float keep_scale = p.dropout_p < 1.0 ? static_cast<float>(1.0 / (1.0 - p.dropout_p)) : 0.f;
  const bool dropout = p.dropout_p > 0.0;

  for (int idx = tid; idx < BQ * D; idx += NT) {
    const int r = idx / D, e = idx % D;
    const int64_t row = q0 + r;
    Qs[idx] = (row < p.L && e < p.E) ? to_float(q[row * p.q_sl + e]) * c : 0.f;
  }

  float o[ROWS][ND], m[ROWS], l[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int d = 0; d < ND; ++d) o[r][d] = 0.f;
  }
  const int64_t kv_end = p.causal ? min(p.S, q0 + BQ) : p.S;
  float* P = Ps + warp * ROWS * BK;
  const float* Qw = Qs + warp * ROWS * D;

  for (int64_t j0 = 0; j0 < kv_end; j0 += BK) {
    __syncthreads();  // everyone is done with the previous K / V tile
    for (int idx = tid; idx < BK * D; idx += NT) {
      const int j = idx / D, e = idx % D;
      const int64_t jj = j0 + j;
      Ks[j * (D + 1) + e] = (jj < p.S && e < p.E) ? to_float(k[jj * p.k_sl + e]) : 0.f;
      Vs[idx] = (jj < p.S && e < p.Ev) ? to_float(v[jj * p.v_sl + e]) : 0.f;
    }
    __syncthreads();

    // s[r][c] = (Q K^T)[row r of this warp][column lane + 32 c], log2 units
    float s[ROWS][NC];
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) s[r][cc] = 0.f;
    for (int e = 0; e < p.E; ++e) {
      float kv[NC];
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) kv[cc] = Ks[(lane + 32 * cc) * (D + 1) + e];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        const float a = Qw[r * D + e];
#pragma unroll
        for (int cc = 0; cc < NC; ++cc) s[r][cc] = fmaf(a, kv[cc], s[r][cc]);
      }
    }

    // online softmax per row: m_new = max(m, max_j s), p = exp2(s - m_new),
    // l = l * exp2(m - m_new) + sum_j p, o *= exp2(m - m_new)
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t row = q0 + warp * ROWS + r;
      float mx = -INFINITY;
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        const int64_t j = j0 + lane + 32 * cc;
        float add = 0.f;
        bool ok = j < p.S && row < p.L && (!p.causal || j <= row);
        if (ok) ok = mask.apply(b, h, row, j, add);
        s[r][cc] = ok ? s[r][cc] + add : -INFINITY;
        mx = fmaxf(mx, s[r][cc]);
      }
      mx = warp_max(mx);
      const float m_new = fmaxf(m[r], mx);
      const float alpha = m[r] == -INFINITY ? 0.f : exp2f(m[r] - m_new);
      const uint32_t key = dropout ? dropout_row_key(p.seed, bh, row) : 0u;
      float sum = 0.f;
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        float pv = m_new == -INFINITY ? 0.f : exp2f(s[r][cc] - m_new);
        sum += pv;
        if (dropout) pv = dropout_keep(key, j0 + lane + 32 * cc, threshold) ? pv * keep_scale : 0.f;
        P[r * BK + lane + 32 * cc] = pv;
      }
      sum = warp_sum(sum);
      l[r] = l[r] * alpha + sum;
      m[r] = m_new;
#pragma unroll
      for (int d = 0; d < ND; ++d) o[r][d] *= alpha;
    }
    __syncwarp();

    // o[r][d] += sum_j P[r][j] V[j][lane + 32 d]
    const int jn = static_cast<int>(min(static_cast<int64_t>(BK), kv_end - j0));
    for (int j = 0; j < jn; ++j) {
      float vv[ND];
#pragma unroll
      for (int d = 0; d < ND; ++d) vv[d] = Vs[j * D + lane + 32 * d];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        const float pv = P[r * BK + j];
#pragma unroll
        for (int d = 0; d < ND; ++d) o[r][d] = fmaf(pv, vv[d], o[r][d]);
      }
    }
    __syncwarp();
  }

  T* out = static_cast<T*>(p.output);
  float* lse = static_cast<float*>(p.logsumexp);
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t row = q0 + warp * ROWS + r;
    if (row >= p.L) continue;
    const bool any = l[r] > 0.f;  // false: the row sees no key -> zeros, logsumexp -inf
    const float inv = any ? 1.f / l[r] : 0.f;
#pragma unroll
    for (int d = 0; d < ND; ++d) {
      const int e = lane + 32 * d;
      if (e < p.Ev) out[(bh * p.L + row) * p.Ev + e] = from_float<T>(o[r][d] * inv);
    }
    if (lane == 0) lse[bh * p.L + row] = any ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

// ---------------------------------------------------------------------------------------------
// Backward, step 1: D = rowsum(dO * O) per query row (float32 workspace), one warp per row.
// ---------------------------------------------------------------------------------------------
template <typename T>
__global__ void attention_backward_rowdot_kernel(const AttentionParams p) {
  const int64_t rows = p.B * p.Hq * p.L;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const T* go = static_cast<const T*>(p.grad_output);
  const T* out = static_cast<const T*>(p.output);
  float* dvec = static_cast<float*>(p.workspace);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const int64_t bh = r / p.L, row = r % p.L, b = bh / p.Hq, h = bh % p.Hq;
    const T* g = go + b * p.go_sb + h * p.go_sh + row * p.go_sl;
    const T* o = out + r * p.Ev;
    float acc = 0.f;
    for (int64_t e = lane; e < p.Ev; e += 32) acc = fmaf(to_float(g[e]), to_float(o[e]), acc);
    acc = warp_sum(acc);
    if (lane == 0) dvec[r] = acc;
  }
}

// ---------------------------------------------------------------------------------------------
// Backward, step 2: dK and dV. Grid: one block per (b * Hkv + kv head, key tile of BKV rows).
// Shared memory (floats): Ks, Vs BKV x D (rows read whole by a warp), Qs, dOs BQ x (D + 1)
// (lanes read rows), Pw, Sw WARPS x ROWS x BQ, lse2 and Dq BQ.
// ---------------------------------------------------------------------------------------------
template <typename T, int D>
__global__ void __launch_bounds__(KvCfg<D>::WARPS * 32)
    attention_backward_dkdv_kernel(const AttentionParams p, int64_t n_tiles) {
  constexpr int ROWS = KvCfg<D>::ROWS, WARPS = KvCfg<D>::WARPS, BQ = KvCfg<D>::BQ;
  constexpr int BKV = WARPS * ROWS, NC = BQ / 32, ND = D / 32, NT = WARPS * 32;
  extern __shared__ float smem[];
  float* Ks = smem;
  float* Vs = Ks + BKV * D;
  float* Qs = Vs + BKV * D;
  float* dOs = Qs + BQ * (D + 1);
  float* Pw = dOs + BQ * (D + 1);
  float* Sw = Pw + WARPS * ROWS * BQ;
  float* lse2 = Sw + WARPS * ROWS * BQ;
  float* Dq = lse2 + BQ;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t bkv = blockIdx.x / n_tiles, j0 = (blockIdx.x % n_tiles) * BKV;
  const int64_t b = bkv / p.Hkv, hk = bkv % p.Hkv, group = p.Hq / p.Hkv;
  const T* k = static_cast<const T*>(p.key) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.value) + b * p.v_sb + hk * p.v_sh;
  const MaskView<T> mask = mask_view<T>(p);
  const float c = static_cast<float>(p.scale) * kLog2e;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const float keep_scale = p.dropout_p < 1.0 ? static_cast<float>(1.0 / (1.0 - p.dropout_p)) : 0.f;
  const bool dropout = p.dropout_p > 0.0;

  for (int idx = tid; idx < BKV * D; idx += NT) {
    const int j = idx / D, e = idx % D;
    const int64_t jj = j0 + j;
    Ks[idx] = (jj < p.S && e < p.E) ? to_float(k[jj * p.k_sl + e]) : 0.f;
    Vs[idx] = (jj < p.S && e < p.Ev) ? to_float(v[jj * p.v_sl + e]) : 0.f;
  }
  float dk[ROWS][ND], dv[ROWS][ND];
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
#pragma unroll
    for (int d = 0; d < ND; ++d) dk[r][d] = dv[r][d] = 0.f;
  const float* Kw = Ks + warp * ROWS * D;
  const float* Vw = Vs + warp * ROWS * D;
  float* P = Pw + warp * ROWS * BQ;
  float* dS = Sw + warp * ROWS * BQ;
  const float* dvec = static_cast<const float*>(p.workspace);
  const float* lse = static_cast<const float*>(p.logsumexp);
  const T* go_base = static_cast<const T*>(p.grad_output);

  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const int64_t bh = b * p.Hq + h;
    const T* q = static_cast<const T*>(p.query) + b * p.q_sb + h * p.q_sh;
    const T* go = go_base + b * p.go_sb + h * p.go_sh;
    const int64_t i_start = p.causal ? j0 / BQ * BQ : 0;  // earlier queries see none of these keys
    for (int64_t i0 = i_start; i0 < p.L; i0 += BQ) {
      __syncthreads();
      for (int idx = tid; idx < BQ * D; idx += NT) {
        const int i = idx / D, e = idx % D;
        const int64_t ii = i0 + i;
        Qs[i * (D + 1) + e] = (ii < p.L && e < p.E) ? to_float(q[ii * p.q_sl + e]) : 0.f;
        dOs[i * (D + 1) + e] = (ii < p.L && e < p.Ev) ? to_float(go[ii * p.go_sl + e]) : 0.f;
      }
      for (int i = tid; i < BQ; i += NT) {
        const int64_t ii = i0 + i;
        lse2[i] = ii < p.L ? lse[bh * p.L + ii] * kLog2e : -INFINITY;
        Dq[i] = ii < p.L ? dvec[bh * p.L + ii] : 0.f;
      }
      __syncthreads();

      // transposed blocks: rows = this warp's keys, columns = queries lane + 32 c
      float st[ROWS][NC], dpt[ROWS][NC];
#pragma unroll
      for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int cc = 0; cc < NC; ++cc) st[r][cc] = dpt[r][cc] = 0.f;
      for (int e = 0; e < p.E; ++e) {
        float qv[NC];
#pragma unroll
        for (int cc = 0; cc < NC; ++cc) qv[cc] = Qs[(lane + 32 * cc) * (D + 1) + e];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const float a = Kw[r * D + e];
#pragma unroll
          for (int cc = 0; cc < NC; ++cc) st[r][cc] = fmaf(a, qv[cc], st[r][cc]);
        }
      }
      for (int e = 0; e < p.Ev; ++e) {
        float gv[NC];
#pragma unroll
        for (int cc = 0; cc < NC; ++cc) gv[cc] = dOs[(lane + 32 * cc) * (D + 1) + e];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const float a = Vw[r * D + e];
#pragma unroll
          for (int cc = 0; cc < NC; ++cc) dpt[r][cc] = fmaf(a, gv[cc], dpt[r][cc]);
        }
      }
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        const int64_t i = i0 + lane + 32 * cc;
        const float l2 = lse2[lane + 32 * cc], di = Dq[lane + 32 * cc];
        const uint32_t key = dropout && i < p.L ? dropout_row_key(p.seed, bh, i) : 0u;
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const int64_t j = j0 + warp * ROWS + r;
          float add = 0.f;
          bool ok = j < p.S && i < p.L && l2 != -INFINITY && (!p.causal || j <= i);
          if (ok) ok = mask.apply(b, h, i, j, add);
          const float pr = ok ? exp2f(st[r][cc] * c + add - l2) : 0.f;
          float z = 1.f;
          if (dropout) z = ok && dropout_keep(key, j, threshold) ? keep_scale : 0.f;
          P[r * BQ + lane + 32 * cc] = pr * z;
          dS[r * BQ + lane + 32 * cc] = pr * (dpt[r][cc] * z - di);
        }
      }
      __syncwarp();
      const int in = static_cast<int>(min(static_cast<int64_t>(BQ), p.L - i0));
      for (int i = 0; i < in; ++i) {
        float gv[ND], qv[ND];
#pragma unroll
        for (int d = 0; d < ND; ++d) {
          gv[d] = dOs[i * (D + 1) + lane + 32 * d];
          qv[d] = Qs[i * (D + 1) + lane + 32 * d];
        }
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const float pv = P[r * BQ + i], sv = dS[r * BQ + i];
#pragma unroll
          for (int d = 0; d < ND; ++d) {
            dv[r][d] = fmaf(pv, gv[d], dv[r][d]);
            dk[r][d] = fmaf(sv, qv[d], dk[r][d]);
          }
        }
      }
      __syncwarp();
    }
  }

  T* gk = static_cast<T*>(p.grad_key);
  T* gv = static_cast<T*>(p.grad_value);
  const float scale = static_cast<float>(p.scale);
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t j = j0 + warp * ROWS + r;
    if (j >= p.S) continue;
#pragma unroll
    for (int d = 0; d < ND; ++d) {
      const int e = lane + 32 * d;
      if (e < p.E) gk[(bkv * p.S + j) * p.E + e] = from_float<T>(dk[r][d] * scale);
      if (e < p.Ev) gv[(bkv * p.S + j) * p.Ev + e] = from_float<T>(dv[r][d]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward, step 3: dQ. Grid: one block per (b * Hq + h, query tile), as the forward.
// Shared memory (floats): Qs, dOs BQ x D (rows read whole by a warp), Ks, Vs BK x (D + 1)
// (lanes read rows), Ss WARPS x ROWS x BK.
// ---------------------------------------------------------------------------------------------
template <typename T, int D>
__global__ void __launch_bounds__(FwdCfg<D>::WARPS * 32)
    attention_backward_dq_kernel(const AttentionParams p, int64_t n_tiles) {
  constexpr int ROWS = FwdCfg<D>::ROWS, WARPS = FwdCfg<D>::WARPS, BK = FwdCfg<D>::BK;
  constexpr int BQ = WARPS * ROWS, NC = BK / 32, ND = D / 32, NT = WARPS * 32;
  extern __shared__ float smem[];
  float* Qs = smem;
  float* dOs = Qs + BQ * D;
  float* Ks = dOs + BQ * D;
  float* Vs = Ks + BK * (D + 1);
  float* Ss = Vs + BK * (D + 1);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t bh = blockIdx.x / n_tiles, q0 = (blockIdx.x % n_tiles) * BQ;
  const int64_t b = bh / p.Hq, h = bh % p.Hq, hk = h / (p.Hq / p.Hkv);
  const T* q = static_cast<const T*>(p.query) + b * p.q_sb + h * p.q_sh;
  const T* k = static_cast<const T*>(p.key) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.value) + b * p.v_sb + hk * p.v_sh;
  const T* go = static_cast<const T*>(p.grad_output) + b * p.go_sb + h * p.go_sh;
  const MaskView<T> mask = mask_view<T>(p);
  const float c = static_cast<float>(p.scale) * kLog2e;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const float keep_scale = p.dropout_p < 1.0 ? static_cast<float>(1.0 / (1.0 - p.dropout_p)) : 0.f;
  const bool dropout = p.dropout_p > 0.0;

  for (int idx = tid; idx < BQ * D; idx += NT) {
    const int r = idx / D, e = idx % D;
    const int64_t row = q0 + r;
    Qs[idx] = (row < p.L && e < p.E) ? to_float(q[row * p.q_sl + e]) : 0.f;
    dOs[idx] = (row < p.L && e < p.Ev) ? to_float(go[row * p.go_sl + e]) : 0.f;
  }
  const float* lse = static_cast<const float*>(p.logsumexp);
  const float* dvec = static_cast<const float*>(p.workspace);
  float l2[ROWS], di[ROWS], dq[ROWS][ND];
  uint32_t keys[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t row = q0 + warp * ROWS + r;
    l2[r] = row < p.L ? lse[bh * p.L + row] * kLog2e : -INFINITY;
    di[r] = row < p.L ? dvec[bh * p.L + row] : 0.f;
    keys[r] = dropout && row < p.L ? dropout_row_key(p.seed, bh, row) : 0u;
#pragma unroll
    for (int d = 0; d < ND; ++d) dq[r][d] = 0.f;
  }
  const float* Qw = Qs + warp * ROWS * D;
  const float* dOw = dOs + warp * ROWS * D;
  float* dS = Ss + warp * ROWS * BK;
  const int64_t kv_end = p.causal ? min(p.S, q0 + BQ) : p.S;

  for (int64_t j0 = 0; j0 < kv_end; j0 += BK) {
    __syncthreads();
    for (int idx = tid; idx < BK * D; idx += NT) {
      const int j = idx / D, e = idx % D;
      const int64_t jj = j0 + j;
      Ks[j * (D + 1) + e] = (jj < p.S && e < p.E) ? to_float(k[jj * p.k_sl + e]) : 0.f;
      Vs[j * (D + 1) + e] = (jj < p.S && e < p.Ev) ? to_float(v[jj * p.v_sl + e]) : 0.f;
    }
    __syncthreads();

    float s[ROWS][NC], dp[ROWS][NC];
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) s[r][cc] = dp[r][cc] = 0.f;
    for (int e = 0; e < p.E; ++e) {
      float kv[NC];
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) kv[cc] = Ks[(lane + 32 * cc) * (D + 1) + e];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        const float a = Qw[r * D + e];
#pragma unroll
        for (int cc = 0; cc < NC; ++cc) s[r][cc] = fmaf(a, kv[cc], s[r][cc]);
      }
    }
    for (int e = 0; e < p.Ev; ++e) {
      float vv[NC];
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) vv[cc] = Vs[(lane + 32 * cc) * (D + 1) + e];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        const float a = dOw[r * D + e];
#pragma unroll
        for (int cc = 0; cc < NC; ++cc) dp[r][cc] = fmaf(a, vv[cc], dp[r][cc]);
      }
    }
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t row = q0 + warp * ROWS + r;
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        const int64_t j = j0 + lane + 32 * cc;
        float add = 0.f;
        bool ok = j < p.S && row < p.L && l2[r] != -INFINITY && (!p.causal || j <= row);
        if (ok) ok = mask.apply(b, h, row, j, add);
        const float pr = ok ? exp2f(s[r][cc] * c + add - l2[r]) : 0.f;
        float z = 1.f;
        if (dropout) z = ok && dropout_keep(keys[r], j, threshold) ? keep_scale : 0.f;
        dS[r * BK + lane + 32 * cc] = pr * (dp[r][cc] * z - di[r]);
      }
    }
    __syncwarp();
    const int jn = static_cast<int>(min(static_cast<int64_t>(BK), kv_end - j0));
    for (int j = 0; j < jn; ++j) {
      float kv[ND];
#pragma unroll
      for (int d = 0; d < ND; ++d) kv[d] = Ks[j * (D + 1) + lane + 32 * d];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        const float sv = dS[r * BK + j];
#pragma unroll
        for (int d = 0; d < ND; ++d) dq[r][d] = fmaf(sv, kv[d], dq[r][d]);
      }
    }
    __syncwarp();
  }

  T* gq = static_cast<T*>(p.grad_query);
  const float scale = static_cast<float>(p.scale);
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t row = q0 + warp * ROWS + r;
    if (row >= p.L) continue;
#pragma unroll
    for (int d = 0; d < ND; ++d) {
      const int e = lane + 32 * d;
      if (e < p.E) gq[(bh * p.L + row) * p.E + e] = from_float<T>(dq[r][d] * scale);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("scaled_dot_product_attention: ") + what + ": " + cudaGetErrorName(err) +
                             " (" + cudaGetErrorString(err) + ")");
  }
}

template <typename Kernel>
void launch(Kernel kernel, int64_t blocks, int threads, size_t smem, cudaStream_t stream, const AttentionParams& p,
            int64_t n_tiles, const char* what) {
  if (blocks <= 0) return;
  if (blocks > 0x7fffffffLL) throw std::invalid_argument("scaled_dot_product_attention: too many CUDA blocks");
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), what);
  kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(p, n_tiles);
  check(cudaGetLastError(), what);
}

int head_bucket(const AttentionParams& p) {
  const int64_t d = p.E > p.Ev ? p.E : p.Ev;
  if (d > 256) {
    throw std::invalid_argument("scaled_dot_product_attention: the CUDA kernels take head dims up to 256, got E=" +
                                std::to_string(p.E) + " and Ev=" + std::to_string(p.Ev));
  }
  return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

template <typename T, int D>
void forward_launch(const AttentionParams& p, cudaStream_t stream) {
  using C = FwdCfg<D>;
  constexpr int BQ = C::WARPS * C::ROWS;
  const int64_t n_tiles = (p.L + BQ - 1) / BQ;
  const size_t smem = sizeof(float) * (BQ * D + C::BK * (D + 1) + C::BK * D + C::WARPS * C::ROWS * C::BK);
  launch(attention_forward_kernel<T, D>, p.B * p.Hq * n_tiles, C::WARPS * 32, smem, stream, p, n_tiles,
         "forward kernel");
}

template <typename T, int D>
void backward_launch(const AttentionParams& p, cudaStream_t stream) {
  // D = rowsum(dO * O)
  const int64_t rows = p.B * p.Hq * p.L;
  if (rows > 0) {
    const int64_t blocks = (rows + 7) / 8;  // 8 warps of 256 threads, one row each
    attention_backward_rowdot_kernel<T><<<static_cast<unsigned>(blocks < (1 << 20) ? blocks : (1 << 20)), 256, 0,
                                          stream>>>(p);
    check(cudaGetLastError(), "backward row-dot kernel");
  }
  {
    using C = KvCfg<D>;
    constexpr int BKV = C::WARPS * C::ROWS;
    const int64_t n_tiles = (p.S + BKV - 1) / BKV;
    const size_t smem = sizeof(float) * (2 * BKV * D + 2 * C::BQ * (D + 1) + 2 * C::WARPS * C::ROWS * C::BQ +
                                         2 * C::BQ);
    launch(attention_backward_dkdv_kernel<T, D>, p.B * p.Hkv * n_tiles, C::WARPS * 32, smem, stream, p, n_tiles,
           "backward dK/dV kernel");
  }
  {
    using C = FwdCfg<D>;
    constexpr int BQ = C::WARPS * C::ROWS;
    const int64_t n_tiles = (p.L + BQ - 1) / BQ;
    const size_t smem = sizeof(float) * (2 * BQ * D + 2 * C::BK * (D + 1) + C::WARPS * C::ROWS * C::BK);
    launch(attention_backward_dq_kernel<T, D>, p.B * p.Hq * n_tiles, C::WARPS * 32, smem, stream, p, n_tiles,
           "backward dQ kernel");
  }
}

template <typename T>
void forward_typed(const AttentionParams& p, cudaStream_t s) {
  switch (head_bucket(p)) {
    case 32: return forward_launch<T, 32>(p, s);
    case 64: return forward_launch<T, 64>(p, s);
    case 128: return forward_launch<T, 128>(p, s);
    default: return forward_launch<T, 256>(p, s);
  }
}

template <typename T>
void backward_typed(const AttentionParams& p, cudaStream_t s) {
  switch (head_bucket(p)) {
    case 32: return backward_launch<T, 32>(p, s);
    case 64: return backward_launch<T, 64>(p, s);
    case 128: return backward_launch<T, 128>(p, s);
    default: return backward_launch<T, 256>(p, s);
  }
}

void check_dtype(const AttentionParams& p) {
  if (p.dtype == DType::f64) {
    throw std::invalid_argument(
        "scaled_dot_product_attention: the CUDA kernels take float32, float16 or bfloat16, not float64");
  }
}

}  // namespace

void attention_forward(const AttentionParams& p, void* stream) {
  check_dtype(p);
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::f16: return forward_typed<__half>(p, s);
    case DType::bf16: return forward_typed<__nv_bfloat16>(p, s);
    default: return forward_typed<float>(p, s);
  }
}

void attention_backward(const AttentionParams& p, void* stream) {
  check_dtype(p);
  if (p.workspace == nullptr) throw std::invalid_argument("scaled_dot_product_attention_backward: no workspace");
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::f16: return backward_typed<__half>(p, s);
    case DType::bf16: return backward_typed<__nv_bfloat16>(p, s);
    default: return backward_typed<float>(p, s);
  }
}

}  // namespace bigmodel::cuda
