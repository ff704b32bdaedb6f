// Fused softmax attention (flash-style): parameters, the dropout hash and kernel entry points.
//
// Semantics are those of torch.nn.functional.scaled_dot_product_attention:
//
//   out = dropout(softmax(scale * Q K^T + bias)) V       per (batch, head)
//
// with Q (L, E), K (S, E), V (S, Ev) and bias (L, S) built from the causal flag and the mask:
//   - causal: key j is visible to query i iff j <= i (torch's top-left alignment, also for L != S);
//   - bool mask: key j is visible iff mask[i][j] is true (both conditions hold when both are given);
//   - additive mask: added to the scaled scores.
// A query row that sees no key at all (every entry masked, or S == 0) gives an output of zeros
// and logsumexp = -inf, and its gradients are zero; it never produces NaN.
//
// The forward writes the output and, per query row, logsumexp = m + log(sum_j exp(s_ij - m))
// (m = the row's max) over the un-dropped probabilities. Nothing of size L x S is ever stored:
// the backward recomputes P = exp(s - logsumexp) block by block.
//
// Dropout keeps element (b, h, i, j) iff dropout_keep(seed, b * Hq + h, i, j, p) below holds:
// a counter-based hash of the element's position, so the forward and the backward (and the CPU
// and the CUDA kernels, whatever their block sizes) regenerate the very same mask from the seed
// instead of storing it. Kept probabilities are scaled by 1 / (1 - p).
#pragma once

#include <cstdint>

#include "bigmodel/common.h"

#if defined(__CUDACC__)
#define BIGMODEL_HOST_DEVICE __host__ __device__
#else
#define BIGMODEL_HOST_DEVICE
#endif

namespace bigmodel {

enum class AttentionMask : int { none = 0, boolean = 1, additive = 2 };

struct AttentionParams {
  DType dtype = DType::f32;  // of query, key, value, output and the gradients
  // query (B, Hq, L, E), key (B, Hkv, S, E), value (B, Hkv, S, Ev), output (B, Hq, L, Ev).
  // Query head h reads key/value head h / (Hq / Hkv) (grouped-query attention; Hq % Hkv == 0).
  int64_t B = 0, Hq = 0, Hkv = 0, L = 0, S = 0, E = 0, Ev = 0;

  // Strides in elements of the batch, head and row dimensions; the last dimension of every
  // tensor is contiguous (stride 1). Batch / head strides may be 0 (broadcast inputs).
  const void* query = nullptr;
  int64_t q_sb = 0, q_sh = 0, q_sl = 0;
  const void* key = nullptr;
  int64_t k_sb = 0, k_sh = 0, k_sl = 0;
  const void* value = nullptr;
  int64_t v_sb = 0, v_sh = 0, v_sl = 0;

  // Output (B, Hq, L, Ev) and logsumexp (B, Hq, L), both contiguous. logsumexp is float32, or
  // float64 when dtype is f64. Forward writes them; backward reads them.
  void* output = nullptr;
  void* logsumexp = nullptr;

  // Mask (B, Hq, L, S) given by strides (0 = broadcast); its last dimension has stride 1.
  // boolean: uint8 (torch.bool), nonzero = visible. additive: the dtype of the query.
  AttentionMask mask_kind = AttentionMask::none;
  const void* mask = nullptr;
  int64_t m_sb = 0, m_sh = 0, m_sl = 0;

  bool causal = false;
  double scale = 1.0;
  double dropout_p = 0.0;  // in [0, 1]; 0 = no dropout
  uint64_t seed = 0;

  // Backward: grad_output is (B, Hq, L, Ev) with strides (go_sb, go_sh, go_sl, 1). grad_query,
  // grad_key and grad_value are written in full, contiguous, with the shapes of query, key and
  // value (B, Hq, L, E), (B, Hkv, S, E), (B, Hkv, S, Ev) (never broadcast: the caller reduces).
  const void* grad_output = nullptr;
  int64_t go_sb = 0, go_sh = 0, go_sl = 0;
  void* grad_query = nullptr;
  void* grad_key = nullptr;
  void* grad_value = nullptr;
  // CUDA backward only: float32 scratch of B * Hq * L elements (rowsum(dO * O) per query row).
  void* workspace = nullptr;

  int num_threads = 1;  // CPU: OpenMP threads the kernel may use
};

// ---- dropout hash -------------------------------------------------------------------------
// `static` on purpose: every translation unit (each per-ISA copy of the CPU kernels, and the
// CUDA file) gets its own copy, so no inline definition compiled with one ISA's flags can be
// picked by the linker for another.

// A 32-bit integer mixer with full avalanche (the "lowbias32" constants from Chris Wellons'
// hash-prospector, public domain).
BIGMODEL_HOST_DEVICE static inline uint32_t attention_mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

BIGMODEL_HOST_DEVICE static inline uint32_t attention_mix64(uint32_t key, uint64_t v) {
  return attention_mix32(key + attention_mix32(static_cast<uint32_t>(v) ^ attention_mix32(static_cast<uint32_t>(v >> 32) + 0x9e3779b9U)));
}

// Key shared by one query row of one (batch, head): hashes the seed, bh = b * Hq + h and the row.
BIGMODEL_HOST_DEVICE static inline uint32_t dropout_row_key(uint64_t seed, int64_t bh, int64_t row) {
  uint32_t k = attention_mix32(static_cast<uint32_t>(seed) ^ 0x85ebca6bU);
  k = attention_mix64(k ^ static_cast<uint32_t>(seed >> 32), static_cast<uint64_t>(bh));
  return attention_mix64(k, static_cast<uint64_t>(row));
}

// Elements whose 24-bit hash is below this are dropped: round(p * 2^24), so p = 1 drops all.
BIGMODEL_HOST_DEVICE static inline uint32_t dropout_threshold(double p) {
  if (!(p > 0.0)) return 0;
  if (p >= 1.0) return 1u << 24;
  return static_cast<uint32_t>(p * 16777216.0 + 0.5);
}

// true = keep element (row key, column j).
BIGMODEL_HOST_DEVICE static inline bool dropout_keep(uint32_t row_key, int64_t col, uint32_t threshold) {
  // The column is spread by an odd multiplier first, so that two rows' keys differing by a small
  // amount do not give shifted copies of one pattern.
  return (attention_mix32(row_key ^ (static_cast<uint32_t>(col) * 0x9e3779b9U)) >> 8) >= threshold;
}

namespace cpu {
void attention_forward(const AttentionParams& p);
void attention_backward(const AttentionParams& p);
// The dropout keep mask of `batch_heads` heads of L x S as uint8 (1 = kept), for tests and the
// need_weights path of MultiheadAttention; the same hash the kernels use.
void attention_dropout_mask(uint64_t seed, int64_t batch_heads, int64_t L, int64_t S, double p, uint8_t* out);
}  // namespace cpu

namespace cuda {
// Launched on `stream` (a cudaStream_t); a failed launch throws std::runtime_error. Head dims E
// and Ev up to 256.
void attention_forward(const AttentionParams& p, void* stream);
void attention_backward(const AttentionParams& p, void* stream);
}  // namespace cuda

}  // namespace bigmodel
