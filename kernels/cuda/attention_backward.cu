// Attention backward on CUDA: D = rowsum(dO * O), then dK/dV and dQ, each recomputing S and dP
// with warp_products and P, dS with Softmax::p_ds; the design: attention_common.cuh.
#include "cuda/attention_common.cuh"

namespace bigmodel::cuda {
namespace {

// Step 1: D = rowsum(dO * O) per query row (float32 workspace), one warp per row.
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

// Step 2: dK and dV. Grid: one block per (b * Hkv + kv head, key tile of BKV rows).
// Shared memory (floats): Ks, Vs BKV x D (rows read whole by a warp), Qs, dOs BQ x (D + 1)
// (lanes read rows), Pw, Sw WARPS x ROWS x BQ, lse2 and Dq BQ.
template <typename T, int D>
__global__ void __launch_bounds__(KvCfg<D>::WARPS * 32)
    attention_backward_dkdv_kernel(const AttentionParams p, int64_t n_tiles) {
  constexpr int ROWS = KvCfg<D>::ROWS, WARPS = KvCfg<D>::WARPS, BQ = KvCfg<D>::BQ;
  constexpr int BKV = WARPS * ROWS, NC = BQ / 32, ND = D / 32, NT = WARPS * 32;
  float* Ks = dynamic_smem();
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
  const Softmax<T> sm(p);

  load_tile<BKV, D, NT>(Ks, D, k, p.k_sl, j0, p.S, p.E);
  load_tile<BKV, D, NT>(Vs, D, v, p.v_sl, j0, p.S, p.Ev);
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

  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const int64_t bh = b * p.Hq + h;
    const T* q = static_cast<const T*>(p.query) + b * p.q_sb + h * p.q_sh;
    const T* go = static_cast<const T*>(p.grad_output) + b * p.go_sb + h * p.go_sh;
    const int64_t i_start = p.causal ? j0 / BQ * BQ : 0;  // earlier queries see none of these keys
    for (int64_t i0 = i_start; i0 < p.L; i0 += BQ) {
      __syncthreads();
      load_tile<BQ, D, NT>(Qs, D + 1, q, p.q_sl, i0, p.L, p.E);
      load_tile<BQ, D, NT>(dOs, D + 1, go, p.go_sl, i0, p.L, p.Ev);
      for (int i = tid; i < BQ; i += NT) {
        const int64_t ii = i0 + i;
        lse2[i] = ii < p.L ? lse[bh * p.L + ii] * kLog2e : -INFINITY;
        Dq[i] = ii < p.L ? dvec[bh * p.L + ii] : 0.f;
      }
      __syncthreads();

      // transposed blocks: rows = this warp's keys, columns = queries lane + 32 c
      float st[ROWS][NC], dpt[ROWS][NC];
      warp_products<ROWS, NC, D>(Kw, Qs, static_cast<int>(p.E), lane, st);
      warp_products<ROWS, NC, D>(Vw, dOs, static_cast<int>(p.Ev), lane, dpt);
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        const int64_t i = i0 + lane + 32 * cc;
        const float l2 = lse2[lane + 32 * cc], di = Dq[lane + 32 * cc];
        const uint32_t key = sm.dropout && i < p.L ? dropout_row_key(p.seed, bh, i) : 0u;
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          sm.p_ds(b, h, i, j0 + warp * ROWS + r, st[r][cc], dpt[r][cc], l2, di, key, P[r * BQ + lane + 32 * cc],
                  dS[r * BQ + lane + 32 * cc]);
        }
      }
      __syncwarp();
      // dV += (P Z)^T dO, dK += dS^T Q over this tile's queries
      const int in = static_cast<int>(min64(BQ, p.L - i0));
      warp_accumulate<ROWS, ND>(P, BQ, dOs, D + 1, in, lane, dv);
      warp_accumulate<ROWS, ND>(dS, BQ, Qs, D + 1, in, lane, dk);
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
      if (e < p.E) gk[(bkv * p.S + j) * p.E + e] = Num<T>::from_acc(dk[r][d] * scale);
      if (e < p.Ev) gv[(bkv * p.S + j) * p.Ev + e] = Num<T>::from_acc(dv[r][d]);
    }
  }
}

// Step 3: dQ. Grid: one block per (b * Hq + h, query tile), as the forward.
// Shared memory (floats): Qs, dOs BQ x D (rows read whole by a warp), Ks, Vs BK x (D + 1)
// (lanes read rows), Ss WARPS x ROWS x BK.
template <typename T, int D>
__global__ void __launch_bounds__(FwdCfg<D>::WARPS * 32)
    attention_backward_dq_kernel(const AttentionParams p, int64_t n_tiles) {
  constexpr int ROWS = FwdCfg<D>::ROWS, WARPS = FwdCfg<D>::WARPS, BK = FwdCfg<D>::BK;
  constexpr int BQ = WARPS * ROWS, NC = BK / 32, ND = D / 32, NT = WARPS * 32;
  float* Qs = dynamic_smem();
  float* dOs = Qs + BQ * D;
  float* Ks = dOs + BQ * D;
  float* Vs = Ks + BK * (D + 1);
  float* Ss = Vs + BK * (D + 1);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const auto [bh, q0, b, h, q, k, v, go] = query_block<T>(p, n_tiles, BQ);
  const Softmax<T> sm(p);

  load_tile<BQ, D, NT>(Qs, D, q, p.q_sl, q0, p.L, p.E);
  load_tile<BQ, D, NT>(dOs, D, go, p.go_sl, q0, p.L, p.Ev);
  const float* lse = static_cast<const float*>(p.logsumexp);
  const float* dvec = static_cast<const float*>(p.workspace);
  float l2[ROWS], di[ROWS], dq[ROWS][ND];
  uint32_t keys[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t row = q0 + warp * ROWS + r;
    l2[r] = row < p.L ? lse[bh * p.L + row] * kLog2e : -INFINITY;
    di[r] = row < p.L ? dvec[bh * p.L + row] : 0.f;
    keys[r] = sm.dropout && row < p.L ? dropout_row_key(p.seed, bh, row) : 0u;
#pragma unroll
    for (int d = 0; d < ND; ++d) dq[r][d] = 0.f;
  }
  const float* Qw = Qs + warp * ROWS * D;
  const float* dOw = dOs + warp * ROWS * D;
  float* dS = Ss + warp * ROWS * BK;
  const int64_t kv_end = p.causal ? min64(p.S, q0 + BQ) : p.S;

  for (int64_t j0 = 0; j0 < kv_end; j0 += BK) {
    __syncthreads();
    load_tile<BK, D, NT>(Ks, D + 1, k, p.k_sl, j0, p.S, p.E);
    load_tile<BK, D, NT>(Vs, D + 1, v, p.v_sl, j0, p.S, p.Ev);
    __syncthreads();

    float s[ROWS][NC], dp[ROWS][NC];
    warp_products<ROWS, NC, D>(Qw, Ks, static_cast<int>(p.E), lane, s);
    warp_products<ROWS, NC, D>(dOw, Vs, static_cast<int>(p.Ev), lane, dp);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
#pragma unroll
      for (int cc = 0; cc < NC; ++cc) {
        float pz;  // P Z itself is not needed here
        sm.p_ds(b, h, q0 + warp * ROWS + r, j0 + lane + 32 * cc, s[r][cc], dp[r][cc], l2[r], di[r], keys[r], pz,
                dS[r * BK + lane + 32 * cc]);
      }
    }
    __syncwarp();
    // dQ += dS K over this tile's keys
    warp_accumulate<ROWS, ND>(dS, BK, Ks, D + 1, static_cast<int>(min64(BK, kv_end - j0)), lane, dq);
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
      if (e < p.E) gq[(bh * p.L + row) * p.E + e] = Num<T>::from_acc(dq[r][d] * scale);
    }
  }
}

}  // namespace

void attention_backward(const AttentionParams& p, void* stream_ptr) {
  if (p.dtype != DType::f64 && p.workspace == nullptr) {
    throw std::invalid_argument("scaled_dot_product_attention_backward: no workspace");
  }
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  dispatch_attention(p, [&](auto tag, auto head_dim) {
    using T = typename decltype(tag)::type;
    constexpr int D = decltype(head_dim)::value;
    const int64_t rows = p.B * p.Hq * p.L;
    if (rows > 0) {  // 8 warps of 256 threads, one row each
      launch_kernel("scaled_dot_product_attention (backward row-dot kernel)", attention_backward_rowdot_kernel<T>,
                    static_cast<unsigned>(min64(ceil_div(rows, 8), 1 << 20)), 256, 0, stream, p);
    }
    using KC = KvCfg<D>;
    constexpr int BKV = KC::WARPS * KC::ROWS;
    const int64_t kv_tiles = ceil_div(p.S, BKV);
    const size_t kv_smem = sizeof(float) * (2 * BKV * D + 2 * KC::BQ * (D + 1) + 2 * KC::WARPS * KC::ROWS * KC::BQ +
                                            2 * KC::BQ);
    if (p.B * p.Hkv * kv_tiles > 0) {
      launch_kernel("scaled_dot_product_attention (backward dK/dV kernel)", attention_backward_dkdv_kernel<T, D>,
                    flat_blocks(p.B * p.Hkv * kv_tiles), KC::WARPS * 32, kv_smem, stream, p, kv_tiles);
    }
    using QC = FwdCfg<D>;
    constexpr int BQ = QC::WARPS * QC::ROWS;
    const int64_t q_tiles = ceil_div(p.L, BQ);
    const size_t q_smem = sizeof(float) * (2 * BQ * D + 2 * QC::BK * (D + 1) + QC::WARPS * QC::ROWS * QC::BK);
    if (p.B * p.Hq * q_tiles > 0) {
      launch_kernel("scaled_dot_product_attention (backward dQ kernel)", attention_backward_dq_kernel<T, D>,
                    flat_blocks(p.B * p.Hq * q_tiles), QC::WARPS * 32, q_smem, stream, p, q_tiles);
    }
  });
}

}  // namespace bigmodel::cuda
