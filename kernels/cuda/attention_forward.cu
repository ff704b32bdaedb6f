// Attention forward on CUDA; the design of both passes: attention_common.cuh.
#include "cuda/attention_common.cuh"

namespace bigmodel::cuda {
namespace {

// Grid: one block per (b * Hq + h, query tile), flattened. Shared memory (floats):
//   Qs BQ x D (pre-multiplied by scale * log2 e), Ks BK x (D + 1) (padded: lanes read rows),
//   Vs BK x D, Ps WARPS x ROWS x BK.
// q (B, Hq, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev) strided; out (B, Hq, L, Ev) and
// lse (B, Hq, L) contiguous.
template <typename T, int D>
__global__ void __launch_bounds__(FwdCfg<D>::WARPS * 32)
    attention_forward_kernel(const AttentionParams p, int64_t n_tiles) {
  constexpr int ROWS = FwdCfg<D>::ROWS, WARPS = FwdCfg<D>::WARPS, BK = FwdCfg<D>::BK;
  constexpr int BQ = WARPS * ROWS, NC = BK / 32, ND = D / 32, NT = WARPS * 32;
  float* Qs = dynamic_smem();
  float* Ks = Qs + BQ * D;
  float* Vs = Ks + BK * (D + 1);
  float* Ps = Vs + BK * D;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const auto [bh, q0, b, h, q, k, v, go] = query_block<T>(p, n_tiles, BQ);
  const Softmax<T> sm(p);

  load_tile<BQ, D, NT>(Qs, D, q, p.q_sl, q0, p.L, p.E, sm.c);

  float o[ROWS][ND], m[ROWS], l[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int d = 0; d < ND; ++d) o[r][d] = 0.f;
  }
  const int64_t kv_end = p.causal ? min64(p.S, q0 + BQ) : p.S;
  float* P = Ps + warp * ROWS * BK;
  const float* Qw = Qs + warp * ROWS * D;

  for (int64_t j0 = 0; j0 < kv_end; j0 += BK) {
    __syncthreads();  // everyone is done with the previous K / V tile
    load_tile<BK, D, NT>(Ks, D + 1, k, p.k_sl, j0, p.S, p.E);
    load_tile<BK, D, NT>(Vs, D, v, p.v_sl, j0, p.S, p.Ev);
    __syncthreads();

    // s[r][c] = (Q K^T)[row r of this warp][column lane + 32 c], log2 units
    float s[ROWS][NC];
    warp_products<ROWS, NC, D>(Qw, Ks, static_cast<int>(p.E), lane, s);

    // online softmax per row: m_new = max(m, max_j s), p = exp2(s - m_new),
    // l = l * exp2(m - m_new) + sum_j p, o *= exp2(m - m_new)
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t row = q0 + warp * ROWS + r;
      float mx = -INFINITY;
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        float add;
        s[r][cc] = sm.visible(b, h, row, j0 + lane + 32 * cc, add) ? s[r][cc] + add : -INFINITY;
        mx = fmaxf(mx, s[r][cc]);
      }
      mx = warp_max(mx);
      const float m_new = fmaxf(m[r], mx);
      const float alpha = m[r] == -INFINITY ? 0.f : exp2f(m[r] - m_new);
      const uint32_t key = sm.dropout ? dropout_row_key(p.seed, bh, row) : 0u;
      float sum = 0.f;
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        float pv = m_new == -INFINITY ? 0.f : exp2f(s[r][cc] - m_new);
        sum += pv;
        if (sm.dropout) pv = dropout_keep(key, j0 + lane + 32 * cc, sm.threshold) ? pv * sm.keep_scale : 0.f;
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
    warp_accumulate<ROWS, ND>(P, BK, Vs, D, static_cast<int>(min64(BK, kv_end - j0)), lane, o);
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
      if (e < p.Ev) out[(bh * p.L + row) * p.Ev + e] = Num<T>::from_acc(o[r][d] * inv);
    }
    if (lane == 0) lse[bh * p.L + row] = any ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

}  // namespace

void attention_forward(const AttentionParams& p, void* stream) {
  dispatch_attention(p, [&](auto tag, auto head_dim) {
    using T = typename decltype(tag)::type;
    constexpr int D = decltype(head_dim)::value;
    using C = FwdCfg<D>;
    constexpr int BQ = C::WARPS * C::ROWS;
    const int64_t n_tiles = ceil_div(p.L, BQ);
    const size_t smem = sizeof(float) * (BQ * D + C::BK * (D + 1) + C::BK * D + C::WARPS * C::ROWS * C::BK);
    if (p.B * p.Hq * n_tiles <= 0) return;
    launch_kernel("scaled_dot_product_attention (forward kernel)", attention_forward_kernel<T, D>,
                  flat_blocks(p.B * p.Hq * n_tiles), C::WARPS * 32, smem, static_cast<cudaStream_t>(stream), p,
                  n_tiles);
  });
}

}  // namespace bigmodel::cuda
