// Pieces shared by the per-ISA attention kernels (attention_forward_kernel.cpp and
// attention_backward_kernel.cpp): GEMM-core calls, packing, and the "panel" layout the score
// blocks live in. Only for *_kernel.cpp files (everything is inside the per-ISA anonymous
// namespace; see kernels/cpu/simd.h).
//
// Panel layout. A block of scores for `cols` keys and up to NR queries (NR = the GEMM's
// register-tile width) is stored key-major: element (key s, query q) at panel[s * NR + q]. It
// is what the GEMM writes when it computes S^T = K Q^T with a C row stride of NR, and it is
// exactly the GEMM's pre-packed B layout (one NR-wide panel, k = key), so the block can be fed
// back as a packed operand (O^T += V^T P^T, dQ^T += K^T dS^T) without any repacking. A block
// of several panels (forward) puts panel p at p * cols_full * NR. Softmax over keys is then a
// vertical reduction: one vector holds Vec::size queries, no horizontal work at all.
#pragma once

#include <cstdint>

#include "bigmodel/attention.h"
#include "bigmodel/gemm.h"
#include "cpu/simd.h"
#include "cpu/simd_math.h"
#include "cpu/util.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// ---- GEMM core calls (operands built with cpu/util.h) ------------------------------------------

struct Scratch {
  void* ptr;
  int64_t bytes;
};

template <typename T>
BM_INLINE void matmul(int64_t M, int64_t N, int64_t K, const GemmOperand& a, const GemmOperand& b, T* c,
                      int64_t rs_c, T alpha, T beta, Scratch s) {
  if (M <= 0 || N <= 0) return;
  gemm_single_thread(gemm_params(M, N, K, a, b, c, rs_c, alpha, beta), s.ptr, s.bytes);
}

// Packs the outer x K matrix src(o, k) = data[o * so + k * sk] as GEMM operand `side` (outer =
// M for A, N for B) into dst; one thread (called inside our parallel region).
template <typename T>
BM_INLINE GemmPacked pack(GemmSide side, int64_t outer, int64_t K, const T* data, int64_t so, int64_t sk, void* dst) {
  return gemm_pack(pack_params(dtype_of<T>(), side, outer, K, data, so, sk, dst));
}

template <typename T>
BM_INLINE int64_t packed_bytes(GemmSide side, int64_t outer, int64_t K) {
  return gemm_packed_bytes(dtype_of<T>(), side, outer, K);
}

// The first `outer` rows of a packed operand (a prefix of its panels; the panels' layout does
// not depend on how many there are).
BM_INLINE GemmPacked prefix(GemmPacked d, int64_t outer) {
  d.outer = outer;
  return d;
}

// Panels [p0, ...) of a packed B operand (`outer` columns from panel p0 on).
template <typename T>
BM_INLINE GemmPacked panels_from(GemmPacked d, int64_t p0, int64_t outer) {
  d.data = static_cast<const T*>(d.data) + p0 * d.k_total * d.panel;
  d.outer = outer;
  return d;
}

// A packed-operand descriptor with the right shape for sizing GEMM scratch (data is unused), or the
// descriptor of panels we wrote ourselves.
template <typename T>
GemmPacked shape_only(GemmSide side, int64_t outer, int64_t k, int panel, const void* data) {
  GemmPacked d;
  d.dtype = dtype_of<T>();
  d.isa = active_isa();
  d.side = side;
  d.outer = outer;
  d.k_total = k;
  d.panel = panel;
  d.data = data;
  return d;
}

// Our own buffer in panel layout (see the header comment) as a packed B operand: op(B) is
// keys x queries, k_total = keys (the panel stride is keys * NR).
template <typename T>
BM_INLINE GemmPacked panels_as_b(const T* data, int64_t queries, int64_t keys, int nr) {
  return shape_only<T>(GemmSide::b, queries, keys, nr, data);
}

// ---- inputs ----------------------------------------------------------------------------------

template <typename T>
struct Inputs {
  const T* q;
  const T* k;
  const T* v;
  int64_t group;  // query heads per key/value head
  uint32_t drop_threshold;
  T keep_scale;
  bool dropout;

  explicit Inputs(const AttentionParams& p)
      : q(static_cast<const T*>(p.query)),
        k(static_cast<const T*>(p.key)),
        v(static_cast<const T*>(p.value)),
        group(p.Hq / p.Hkv),
        drop_threshold(dropout_threshold(p.dropout_p)),
        keep_scale(p.dropout_p < 1.0 ? static_cast<T>(1.0 / (1.0 - p.dropout_p)) : T(0)),
        dropout(p.dropout_p > 0.0) {}

  const T* q_head(const AttentionParams& p, int64_t b, int64_t h) const { return q + b * p.q_sb + h * p.q_sh; }
  const T* k_head(const AttentionParams& p, int64_t b, int64_t hk) const { return k + b * p.k_sb + hk * p.k_sh; }
  const T* v_head(const AttentionParams& p, int64_t b, int64_t hk) const { return v + b * p.v_sb + hk * p.v_sh; }
};

// Threads worth using for `flops` of work split into `items`.
BM_INLINE int threads_for(const AttentionParams& p, double flops, int64_t items) {
  int nt = p.num_threads < 1 ? 1 : p.num_threads;
  if (flops < 2e6) nt = 1;
  if (items < nt) nt = static_cast<int>(items < 1 ? 1 : items);
  return nt;
}

// ---- panels ----------------------------------------------------------------------------------

// Per query of one panel: how many of the block's first `cols` keys it may see (causal limit;
// 0 for queries past L or, in the backward, rows with logsumexp -inf). Returns min over the
// panel's `nr` lanes (lanes >= rows get 0).
BM_INLINE int64_t panel_limits(int64_t* limit, int nr, int64_t rows, int64_t r0, int64_t j0, int64_t cols,
                               bool causal) {
  int64_t lo = cols;
  for (int q = 0; q < nr; ++q) {
    int64_t n = q < rows ? cols : 0;
    if (causal && q < rows) n = min64(cols, max64(r0 + q + 1 - j0, 0));
    limit[q] = n;
    lo = min64(lo, n);
  }
  return lo;
}

// Adds a mask that varies by query row (m_sl != 0) to a panel: x[s * nr + q] += mask(r0 + q, j0 + s)
// (additive) or = -inf where the bool mask is false. Key-padding style masks (m_sl == 0) are
// applied in the vector passes instead.
template <typename T>
void add_row_mask(T* x, int nr, int64_t rows, int64_t cols, const AttentionParams& p, int64_t b, int64_t h,
                  int64_t r0, int64_t j0) {
  const int64_t base = b * p.m_sb + h * p.m_sh + j0;
  if (p.mask_kind == AttentionMask::boolean) {
    const uint8_t* m = static_cast<const uint8_t*>(p.mask) + base;
    for (int64_t q = 0; q < rows; ++q) {
      const uint8_t* mr = m + (r0 + q) * p.m_sl;
      for (int64_t s = 0; s < cols; ++s)
        if (!mr[s]) x[s * nr + q] = neg_inf<T>();
    }
  } else {
    const T* m = static_cast<const T*>(p.mask) + base;
    for (int64_t q = 0; q < rows; ++q) {
      const T* mr = m + (r0 + q) * p.m_sl;
      for (int64_t s = 0; s < cols; ++s) x[s * nr + q] += mr[s];
    }
  }
}

// The mask row shared by all queries of (b, h) when m_sl == 0, else null.
template <typename T>
BM_INLINE const void* key_mask(const AttentionParams& p, int64_t b, int64_t h, int64_t j0) {
  if (p.mask_kind == AttentionMask::none || p.m_sl != 0) return nullptr;
  const int64_t off = b * p.m_sb + h * p.m_sh + j0;
  if (p.mask_kind == AttentionMask::boolean) return static_cast<const uint8_t*>(p.mask) + off;
  return static_cast<const T*>(p.mask) + off;
}

// x = x + key mask of key s (additive), or -inf if the bool key mask is false.
template <typename T>
BM_INLINE Vec<T> apply_key_mask(Vec<T> x, AttentionMask kind, const void* km, int64_t s) {
  if (km == nullptr) return x;
  if (kind == AttentionMask::boolean)
    return static_cast<const uint8_t*>(km)[s] ? x : Vec<T>::broadcast(neg_inf<T>());
  return x + Vec<T>::broadcast(static_cast<const T*>(km)[s]);
}

// Dropout multipliers of a panel: x[s * nr + q] *= keep(row r0 + q, key j0 + s) ? 1/(1-p) : 0,
// for q < rows, s < cols; also into y when y is given (y *= z). Plain integer loops: the
// compiler vectorises the hash over q.
template <typename T>
void dropout_panel(T* x, T* y, int nr, int64_t rows, int64_t cols, const AttentionParams& p, int64_t bh, int64_t r0,
                   int64_t j0, uint32_t threshold, T keep_scale, uint32_t* keys) {
  for (int64_t q = 0; q < rows; ++q) keys[q] = dropout_row_key(p.seed, bh, r0 + q);
  for (int64_t s = 0; s < cols; ++s) {
    T* xs = x + s * nr;
    T* ys = y ? y + s * nr : nullptr;
    for (int64_t q = 0; q < rows; ++q) {
      const T z = dropout_keep(keys[q], j0 + s, threshold) ? keep_scale : T(0);
      xs[q] *= z;
      if (ys) ys[q] *= z;
    }
  }
}

template <typename T>
BM_INLINE void fill(T* x, int64_t n, T v) {
  for (int64_t i = 0; i < n; ++i) x[i] = v;
}

// Float copy of per-lane limits, for vector compares (exact: limits are at most a block).
template <typename T>
BM_INLINE void limits_as(T* dst, const int64_t* limit, int nr) {
  for (int q = 0; q < nr; ++q) dst[q] = static_cast<T>(limit[q]);
}

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
