// Fused softmax attention on the CPU (flash-attention style), forward and backward.
// Compiled once per ISA path (see kernels/cpu/simd.h); kernels/cpu/attention/attention.cpp
// dispatches. Semantics and the dropout hash: kernels/include/bigmodel/attention.h.
//
// Forward, per (batch, head, block of qb query rows), over blocks of kb keys:
//   S   = scale * Q_i K_j^T                  GEMM (alpha = scale), qb x kb, in thread scratch
//   row pass over S (each row stays in L1): mask + row max in one sweep; p = exp(s - m_new)
//       and the row sum in a second; rescale the output row by exp(m_old - m_new)
//   O_i = O_i + P V_j                         GEMM accumulating into the output rows (beta = 1)
// and finally O_i /= l, logsumexp = m + log(l). Only the output and logsumexp are written;
// the L x S matrix never exists beyond one qb x kb block per thread. Under causal masking the
// key blocks a query block cannot see are never visited.
//
// Backward (FlashAttention-2's order), per (batch, key/value head, chunk of key blocks), over
// the query heads of its group and the query blocks that can see the key block:
//   S   = scale * Q_i K_j^T,  P = exp(S + mask - logsumexp_i)     (recomputed, never stored)
//   dP  = dO_i V_j^T                      (then * dropout multipliers)
//   dV_j += (P * Z)^T dO_i
//   dS  = P * (dP - D_i),  D_i = rowsum(dO_i * O_i)   (computed once per row, up front)
//   dQ_i += scale * dS K_j,   dK_j += scale * dS^T Q_i
// Five GEMMs per block pair, all on the shared GEMM core (gemm_single_thread inside our own
// parallel region, with per-thread scratch). Work items own their dK / dV rows and, when there
// is one chunk per head, their dQ rows: no shared writes. When heads are too few to share
// among the threads, key blocks are dealt to chunks and each chunk sums into its own dQ
// partial, reduced after a barrier (extra memory O(chunks * L * E)).
#include <omp.h>

#include <cstdint>

#include "bigmodel/attention.h"
#include "bigmodel/gemm.h"
#include "cpu/simd.h"
#include "cpu/simd_math.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

BM_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
BM_INLINE int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
BM_INLINE int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

template <typename T>
BM_INLINE T neg_inf() {
  return -static_cast<T>(__builtin_huge_val());
}

template <typename T>
BM_INLINE DType dtype_of() {
  return sizeof(T) == 8 ? DType::f64 : DType::f32;
}

// One allocation carved into 64-byte aligned per-thread pieces.
struct Arena {
  char* raw = nullptr;
  char* base = nullptr;
  explicit Arena(int64_t bytes) {
    raw = new char[bytes + 64];
    base = raw + ((64 - (reinterpret_cast<uintptr_t>(raw) & 63)) & 63);
  }
  ~Arena() { delete[] raw; }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
};

BM_INLINE int64_t align64(int64_t bytes) { return round_up(bytes, 64); }

// A strided matrix view for the GEMM: element (r, c) at data[r * rs + c * cs].
template <typename T>
struct Mat {
  const T* data;
  int64_t rs, cs;
};

// C (M x N, row stride ldc, unit column stride) = alpha * A B + beta * C.
template <typename T>
BM_INLINE GemmParams gemm_params(int64_t M, int64_t N, int64_t K, Mat<T> a, Mat<T> b, T* c, int64_t ldc, T alpha,
                                 T beta) {
  GemmParams g;
  g.dtype = dtype_of<T>();
  g.M = M;
  g.N = N;
  g.K = K;
  g.a.kind = GemmOperandKind::strided;
  g.a.data = a.data;
  g.a.rs = a.rs;
  g.a.cs = a.cs;
  g.b.kind = GemmOperandKind::strided;
  g.b.data = b.data;
  g.b.rs = b.rs;
  g.b.cs = b.cs;
  g.c = c;
  g.rs_c = ldc;
  g.cs_c = 1;
  g.alpha = alpha;
  g.beta = beta;
  return g;
}

struct Scratch {
  void* ptr;
  int64_t bytes;
};

template <typename T>
BM_INLINE void matmul(int64_t M, int64_t N, int64_t K, Mat<T> a, Mat<T> b, T* c, int64_t ldc, T alpha, T beta,
                      Scratch s) {
  if (M <= 0 || N <= 0) return;
  gemm_single_thread(gemm_params(M, N, K, a, b, c, ldc, alpha, beta), s.ptr, s.bytes);
}

// ---------------------------------------------------------------------------------------------
// Row helpers (n elements at p; full vectors take the unmasked path, one masked tail)
// ---------------------------------------------------------------------------------------------

// 1) s += mask (additive) or s = -inf where !mask (boolean), on s[0, n)   2) returns max(s)
// (-inf when n == 0).
template <typename T>
BM_INLINE T mask_and_max(T* s, int64_t n, AttentionMask kind, const void* mask_row) {
  using V = Vec<T>;
  V mx = V::broadcast(neg_inf<T>());
  int64_t j = 0;
  T r;
  if (kind == AttentionMask::additive) {
    const T* m = static_cast<const T*>(mask_row);
    for (; j + V::size <= n; j += V::size) {
      const V x = V::load(s + j) + V::load(m + j);
      x.store(s + j);
      mx = vec_max(mx, x);
    }
    r = reduce_max(mx);
    for (; j < n; ++j) {
      s[j] += m[j];
      r = s[j] > r ? s[j] : r;
    }
    return r;
  }
  if (kind == AttentionMask::boolean) {
    const uint8_t* m = static_cast<const uint8_t*>(mask_row);
    for (int64_t i = 0; i < n; ++i) s[i] = m[i] ? s[i] : neg_inf<T>();
  }
  for (; j + V::size <= n; j += V::size) mx = vec_max(mx, V::load(s + j));
  r = reduce_max(mx);
  for (; j < n; ++j) r = s[j] > r ? s[j] : r;
  return r;
}

// 1) s = exp(s - m) on s[0, n)   2) returns sum(s). m is finite.
template <typename T>
BM_INLINE T exp_and_sum(T* s, int64_t n, T m) {
  using V = Vec<T>;
  const V vm = V::broadcast(m);
  V acc = V::zero();
  int64_t j = 0;
  for (; j + V::size <= n; j += V::size) {
    const V e = vec_exp(V::load(s + j) - vm);
    e.store(s + j);
    acc = acc + e;
  }
  T r = reduce_add(acc);
  if (j < n) {
    vec_exp(V::load(s + j, static_cast<int>(n - j)) - vm).store(s + j, static_cast<int>(n - j));
    for (; j < n; ++j) r += s[j];
  }
  return r;
}

// x[0, n) *= a
template <typename T>
BM_INLINE void scale_row(T* x, int64_t n, T a) {
  using V = Vec<T>;
  const V va = V::broadcast(a);
  int64_t j = 0;
  for (; j + V::size <= n; j += V::size) (V::load(x + j) * va).store(x + j);
  if (j < n) (V::load(x + j, static_cast<int>(n - j)) * va).store(x + j, static_cast<int>(n - j));
}

// x[0, n) *= y[0, n)
template <typename T>
BM_INLINE void mul_row(T* x, const T* y, int64_t n) {
  using V = Vec<T>;
  int64_t j = 0;
  for (; j + V::size <= n; j += V::size) (V::load(x + j) * V::load(y + j)).store(x + j);
  if (j < n) (V::load(x + j, static_cast<int>(n - j)) * V::load(y + j, static_cast<int>(n - j))).store(x + j, static_cast<int>(n - j));
}

// dot(x[0, n), y[0, n)) accumulated in double: D = rowsum(dO * O) is subtracted from dP in the
// backward, where the two nearly cancel for rows whose attention sits on one key; O(L * Ev) work.
template <typename T>
BM_INLINE double dot_row_f64(const T* x, const T* y, int64_t n) {
  double acc = 0.0;
  for (int64_t j = 0; j < n; ++j) acc += static_cast<double>(x[j]) * static_cast<double>(y[j]);
  return acc;
}

template <typename T>
BM_INLINE void zero_row(T* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] = T(0);
}

// Dropout multipliers of one row: z[j] = keep(row, j0 + j) ? 1 / (1 - p) : 0, j < n. A plain
// integer loop: the compiler vectorises the hash for each ISA path.
template <typename T>
BM_INLINE void dropout_row(T* z, int64_t n, uint32_t row_key, int64_t j0, uint32_t threshold, T keep_scale) {
  for (int64_t j = 0; j < n; ++j) z[j] = dropout_keep(row_key, j0 + j, threshold) ? keep_scale : T(0);
}

// ---------------------------------------------------------------------------------------------
// Shared setup
// ---------------------------------------------------------------------------------------------

template <typename T>
struct Views {
  const T* q;
  const T* k;
  const T* v;
  T* out;
  T* lse;
  int64_t group;  // query heads per key/value head
  uint32_t drop_threshold;
  T keep_scale;
  bool dropout;

  explicit Views(const AttentionParams& p)
      : q(static_cast<const T*>(p.query)),
        k(static_cast<const T*>(p.key)),
        v(static_cast<const T*>(p.value)),
        out(static_cast<T*>(p.output)),
        lse(static_cast<T*>(p.logsumexp)),
        group(p.Hq / p.Hkv),
        drop_threshold(dropout_threshold(p.dropout_p)),
        keep_scale(p.dropout_p < 1.0 ? static_cast<T>(1.0 / (1.0 - p.dropout_p)) : T(0)),
        dropout(p.dropout_p > 0.0) {}

  const T* q_head(const AttentionParams& p, int64_t b, int64_t h) const { return q + b * p.q_sb + h * p.q_sh; }
  const T* k_head(const AttentionParams& p, int64_t b, int64_t h) const {
    return k + b * p.k_sb + (h / group) * p.k_sh;
  }
  const T* v_head(const AttentionParams& p, int64_t b, int64_t h) const {
    return v + b * p.v_sb + (h / group) * p.v_sh;
  }
  // Mask row `row` of (b, h) starting at column j0, or null.
  const void* mask_row(const AttentionParams& p, int64_t b, int64_t h, int64_t row, int64_t j0) const {
    if (p.mask_kind == AttentionMask::none) return nullptr;
    const int64_t off = b * p.m_sb + h * p.m_sh + row * p.m_sl + j0;
    if (p.mask_kind == AttentionMask::boolean) return static_cast<const uint8_t*>(p.mask) + off;
    return static_cast<const T*>(p.mask) + off;
  }
};

// Number of keys of block [j0, j0 + cols) that query `row` may see under causal masking.
BM_INLINE int64_t causal_valid(bool causal, int64_t row, int64_t j0, int64_t cols) {
  if (!causal) return cols;
  return min64(cols, max64(row + 1 - j0, 0));
}

// Threads worth using for `flops` of work.
BM_INLINE int threads_for(const AttentionParams& p, double flops, int64_t items) {
  int nt = p.num_threads < 1 ? 1 : p.num_threads;
  if (flops < 2e6) nt = 1;
  if (items < nt) nt = static_cast<int>(items < 1 ? 1 : items);
  return nt;
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

// Block sizes (rows of Q, rows of K / V per step). The key block is a multiple of the GEMM's
// NR so that its column panels are whole.
struct Blocking {
  int64_t qb, kb;
};

template <typename T>
Blocking forward_blocking(const AttentionParams& p) {
  Blocking b;
  b.qb = p.L >= 768 ? 128 : p.L >= 192 ? 64 : 32;
  b.kb = 512;
  const int64_t nr = gemm_blocking(dtype_of<T>()).NR;
  if (nr > 0) b.kb = round_up(b.kb, nr);
  b.qb = min64(b.qb, max64(p.L, 1));
  b.kb = min64(b.kb, max64(p.S, 1));
  return b;
}

template <typename T>
void forward_impl(const AttentionParams& p) {
  const Views<T> w(p);
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev;
  const Blocking blk = forward_blocking<T>(p);
  const int64_t qb = blk.qb, kb = blk.kb, ld = round_up(kb, 16);
  const int64_t nq = (L + qb - 1) / qb;
  const int64_t items = p.B * p.Hq * nq;
  if (items == 0) return;
  const int nt = threads_for(p, 4.0 * p.B * p.Hq * L * S * (E > Ev ? E : Ev), items);

  // Scratch per thread: the score block, running max / sum per row, dropout multipliers and the
  // GEMM's packing buffers, sized with the largest problem each GEMM sees (the pointers only
  // have to be non-null for sizing; strides are the real ones).
  T d[1];
  const int64_t g_bytes =
      max64(gemm_scratch_bytes(gemm_params<T>(qb, kb, E, {d, p.q_sl, 1}, {d, 1, p.k_sl}, d, ld, 1, 0)),
            gemm_scratch_bytes(gemm_params<T>(qb, Ev, kb, {d, ld, 1}, {d, p.v_sl, 1}, d, Ev, 1, 1)));
  const int64_t s_off = 0, m_off = s_off + align64(qb * ld * sizeof(T)), l_off = m_off + align64(qb * sizeof(T));
  const int64_t z_off = l_off + align64(qb * sizeof(T)), g_off = z_off + align64(kb * sizeof(T));
  const int64_t per_thread = g_off + align64(g_bytes);
  Arena arena(per_thread * nt);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    char* mine = arena.base + per_thread * omp_get_thread_num();
    T* sbuf = reinterpret_cast<T*>(mine + s_off);
    T* m = reinterpret_cast<T*>(mine + m_off);
    T* l = reinterpret_cast<T*>(mine + l_off);
    T* z = reinterpret_cast<T*>(mine + z_off);
    const Scratch gs{mine + g_off, g_bytes};

#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t bh = item / nq, iq = item - bh * nq;
      const int64_t b = bh / p.Hq, h = bh - b * p.Hq;
      const int64_t i0 = iq * qb, rows = min64(qb, L - i0);
      const T* q = w.q_head(p, b, h) + i0 * p.q_sl;
      const T* k = w.k_head(p, b, h);
      const T* v = w.v_head(p, b, h);
      T* o = w.out + (bh * L + i0) * Ev;
      const int64_t kv_end = p.causal ? min64(S, i0 + rows) : S;
      for (int64_t r = 0; r < rows; ++r) {
        m[r] = neg_inf<T>();
        l[r] = T(0);
      }
      bool first = true;
      for (int64_t j0 = 0; j0 < kv_end; j0 += kb) {
        const int64_t cols = min64(kb, kv_end - j0);
        // S = scale * Q_i K_j^T
        matmul<T>(rows, cols, E, {q, p.q_sl, 1}, {k + j0 * p.k_sl, 1, p.k_sl}, sbuf, ld, static_cast<T>(p.scale),
                  T(0), gs);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t row = i0 + r;
          T* s = sbuf + r * ld;
          const int64_t valid = causal_valid(p.causal, row, j0, cols);
          const T bmax = mask_and_max(s, valid, p.mask_kind, w.mask_row(p, b, h, row, j0));
          const T m_new = bmax > m[r] ? bmax : m[r];
          T sum = T(0);
          if (m_new == neg_inf<T>()) {
            zero_row(s, cols);  // nothing visible yet in this row
          } else {
            sum = exp_and_sum(s, valid, m_new);
            zero_row(s + valid, cols - valid);
            if (w.dropout && valid > 0) {
              dropout_row(z, valid, dropout_row_key(p.seed, bh, row), j0, w.drop_threshold, w.keep_scale);
              mul_row(s, z, valid);
            }
          }
          // online softmax: l = l * exp(m_old - m_new) + sum, O_row *= exp(m_old - m_new)
          const T alpha = m[r] == neg_inf<T>() ? T(0) : (m[r] == m_new ? T(1) : std::exp(m[r] - m_new));
          l[r] = l[r] * alpha + sum;
          m[r] = m_new;
          if (!first && alpha != T(1)) scale_row(o + r * Ev, Ev, alpha);
        }
        // O_i = O_i + P V_j   (the first block overwrites)
        matmul<T>(rows, Ev, cols, {sbuf, ld, 1}, {v + j0 * p.v_sl, p.v_sl, 1}, o, Ev, T(1), first ? T(0) : T(1), gs);
        first = false;
      }
      T* lse = w.lse + bh * L + i0;
      for (int64_t r = 0; r < rows; ++r) {
        if (first || !(l[r] > T(0))) {  // no visible key: zeros, logsumexp = -inf
          zero_row(o + r * Ev, Ev);
          lse[r] = neg_inf<T>();
        } else {
          scale_row(o + r * Ev, Ev, T(1) / l[r]);
          lse[r] = m[r] + std::log(l[r]);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------

template <typename T>
Blocking backward_blocking(const AttentionParams& p) {
  Blocking b;
  b.qb = 64;
  b.kb = 128;
  const int64_t nr = gemm_blocking(dtype_of<T>()).NR;
  if (nr > 0) b.kb = round_up(b.kb, nr);
  b.qb = min64(b.qb, max64(p.L, 1));
  b.kb = min64(b.kb, max64(p.S, 1));
  return b;
}

template <typename T>
void backward_impl(const AttentionParams& p) {
  const Views<T> w(p);
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev, Hq = p.Hq, Hkv = p.Hkv, group = w.group;
  const T* go = static_cast<const T*>(p.grad_output);
  T* dq = static_cast<T*>(p.grad_query);
  T* dk = static_cast<T*>(p.grad_key);
  T* dv = static_cast<T*>(p.grad_value);
  const Blocking blk = backward_blocking<T>(p);
  const int64_t qb = blk.qb, kb = blk.kb, ld = round_up(kb, 16);
  const int64_t n_kv = (S + kb - 1) / kb;
  const int64_t bhkv = p.B * Hkv;
  if (p.B * Hq == 0) return;

  const double flops = 8.0 * p.B * Hq * L * S * (E > Ev ? E : Ev);
  int nt = threads_for(p, flops, p.B * Hq * (L > S ? L : S));
  // One chunk per (batch, kv head) when those share out evenly; else deal key blocks to chunks.
  int64_t chunks = 1;
  if (nt > 1 && bhkv % nt != 0 && bhkv < 4 * nt && n_kv > 1) chunks = min64(n_kv, nt);
  const int64_t items = bhkv * chunks;
  if (items < nt) nt = static_cast<int>(items < 1 ? 1 : items);

  // Shared buffers: D (one value per query row) and, with several chunks, dQ partials.
  const int64_t q_rows = p.B * Hq * L;
  const int64_t d_bytes = align64(q_rows * sizeof(T));
  const int64_t part_elems = chunks > 1 ? chunks * q_rows * E : 0;

  T d[1];  // sizing only: see forward_impl
  const int64_t g_bytes = max64(
      max64(gemm_scratch_bytes(gemm_params<T>(qb, kb, E, {d, p.q_sl, 1}, {d, 1, p.k_sl}, d, ld, 1, 0)),
            gemm_scratch_bytes(gemm_params<T>(qb, kb, Ev, {d, p.go_sl, 1}, {d, 1, p.v_sl}, d, ld, 1, 0))),
      max64(max64(gemm_scratch_bytes(gemm_params<T>(kb, Ev, qb, {d, 1, ld}, {d, p.go_sl, 1}, d, Ev, 1, 1)),
                  gemm_scratch_bytes(gemm_params<T>(qb, E, kb, {d, ld, 1}, {d, p.k_sl, 1}, d, E, 1, 1))),
            gemm_scratch_bytes(gemm_params<T>(kb, E, qb, {d, 1, ld}, {d, p.q_sl, 1}, d, E, 1, 1))));
  const int64_t blk_bytes = align64(qb * ld * sizeof(T));
  const int64_t s_off = 0, dp_off = blk_bytes, pd_off = 2 * blk_bytes, z_off = pd_off + (w.dropout ? blk_bytes : 0);
  const int64_t g_off = z_off + align64(kb * sizeof(T));
  const int64_t per_thread = g_off + align64(g_bytes);
  Arena arena(d_bytes + align64(part_elems * sizeof(T)) + per_thread * nt);
  T* dbuf = reinterpret_cast<T*>(arena.base);
  T* partial = reinterpret_cast<T*>(arena.base + d_bytes);
  char* thread_base = arena.base + d_bytes + align64(part_elems * sizeof(T));

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    char* mine = thread_base + per_thread * omp_get_thread_num();
    T* sbuf = reinterpret_cast<T*>(mine + s_off);   // S, then P
    T* dpbuf = reinterpret_cast<T*>(mine + dp_off); // dP, then dS
    T* pdbuf = w.dropout ? reinterpret_cast<T*>(mine + pd_off) : sbuf;  // P * Z
    T* z = reinterpret_cast<T*>(mine + z_off);
    const Scratch gs{mine + g_off, g_bytes};

    // D = rowsum(dO * O), one value per query row.
#pragma omp for schedule(static)
    for (int64_t r = 0; r < q_rows; ++r) {
      const int64_t bh = r / L, row = r - bh * L;
      const int64_t b = bh / Hq, h = bh - b * Hq;
      dbuf[r] = static_cast<T>(dot_row_f64(go + b * p.go_sb + h * p.go_sh + row * p.go_sl, w.out + r * Ev, Ev));
    }

#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t bkv = item / chunks, c = item - bkv * chunks;
      const int64_t b = bkv / Hkv, hkv = bkv - b * Hkv;
      T* dk_head = dk + bkv * S * E;
      T* dv_head = dv + bkv * S * Ev;
      // dQ destination of query head h: the gradient itself, or this chunk's partial.
      auto dq_head = [&](int64_t h) {
        const int64_t bh = b * Hq + h;
        return chunks == 1 ? dq + bh * L * E : partial + (c * p.B * Hq + bh) * L * E;
      };
      for (int64_t h = hkv * group; h < (hkv + 1) * group; ++h) zero_row(dq_head(h), L * E);
      for (int64_t jb = c; jb < n_kv; jb += chunks) {
        const int64_t j0 = jb * kb, cols = min64(kb, S - j0);
        zero_row(dk_head + j0 * E, cols * E);
        zero_row(dv_head + j0 * Ev, cols * Ev);
      }
      for (int64_t jb = c; jb < n_kv; jb += chunks) {
        const int64_t j0 = jb * kb, cols = min64(kb, S - j0);
        const int64_t i_start = p.causal ? j0 / qb * qb : 0;  // earlier query rows see none of these keys
        const T* kj = w.k + b * p.k_sb + hkv * p.k_sh + j0 * p.k_sl;
        const T* vj = w.v + b * p.v_sb + hkv * p.v_sh + j0 * p.v_sl;
        T* dkj = dk_head + j0 * E;
        T* dvj = dv_head + j0 * Ev;
        for (int64_t h = hkv * group; h < (hkv + 1) * group; ++h) {
          const int64_t bh = b * Hq + h;
          T* dqh = dq_head(h);
          for (int64_t i0 = i_start; i0 < L; i0 += qb) {
            const int64_t rows = min64(qb, L - i0);
            const T* qi = w.q_head(p, b, h) + i0 * p.q_sl;
            const T* goi = go + b * p.go_sb + h * p.go_sh + i0 * p.go_sl;
            const T* lse = w.lse + bh * L + i0;
            const T* d = dbuf + bh * L + i0;
            // S = scale * Q_i K_j^T; P = exp(S + mask - logsumexp)
            matmul<T>(rows, cols, E, {qi, p.q_sl, 1}, {kj, 1, p.k_sl}, sbuf, ld, static_cast<T>(p.scale), T(0), gs);
            // dP = dO_i V_j^T
            matmul<T>(rows, cols, Ev, {goi, p.go_sl, 1}, {vj, 1, p.v_sl}, dpbuf, ld, T(1), T(0), gs);
            for (int64_t r = 0; r < rows; ++r) {
              const int64_t row = i0 + r;
              T* s = sbuf + r * ld;
              T* dpr = dpbuf + r * ld;
              const int64_t valid = lse[r] == neg_inf<T>() ? 0 : causal_valid(p.causal, row, j0, cols);
              if (valid > 0) {
                mask_and_max(s, valid, p.mask_kind, w.mask_row(p, b, h, row, j0));
                // exp(s - lse): the row's sum is not needed here
                exp_and_sum(s, valid, lse[r]);
              }
              zero_row(s + valid, cols - valid);
              if (w.dropout) {
                T* pd = pdbuf + r * ld;
                if (valid > 0) {
                  dropout_row(z, valid, dropout_row_key(p.seed, bh, row), j0, w.drop_threshold, w.keep_scale);
                  for (int64_t j = 0; j < valid; ++j) pd[j] = s[j] * z[j];
                  mul_row(dpr, z, valid);
                }
                zero_row(pd + valid, cols - valid);
              }
              // dS = P * (dP - D)
              const T di = d[r];
              for (int64_t j = 0; j < cols; ++j) dpr[j] = s[j] * (dpr[j] - di);
            }
            // dV_j += (P Z)^T dO_i
            matmul<T>(cols, Ev, rows, {pdbuf, 1, ld}, {goi, p.go_sl, 1}, dvj, Ev, T(1), T(1), gs);
            // dQ_i += scale * dS K_j
            matmul<T>(rows, E, cols, {dpbuf, ld, 1}, {kj, p.k_sl, 1}, dqh + i0 * E, E, static_cast<T>(p.scale), T(1),
                      gs);
            // dK_j += scale * dS^T Q_i
            matmul<T>(cols, E, rows, {dpbuf, 1, ld}, {qi, p.q_sl, 1}, dkj, E, static_cast<T>(p.scale), T(1), gs);
          }
        }
      }
    }

    if (chunks > 1) {
      // dQ = sum over chunks of the partials
#pragma omp for schedule(static)
      for (int64_t r = 0; r < q_rows; ++r) {
        T* dst = dq + r * E;
        const T* src = partial + r * E;
        for (int64_t e = 0; e < E; ++e) dst[e] = src[e];
        for (int64_t cc = 1; cc < chunks; ++cc) {
          const T* sp = partial + (cc * q_rows + r) * E;
          for (int64_t e = 0; e < E; ++e) dst[e] += sp[e];
        }
      }
    }
  }
}

}  // namespace

// Entry points (float32 / float64; the bindings have rejected other dtypes).
void attention_forward(const AttentionParams& p) {
  p.dtype == DType::f64 ? forward_impl<double>(p) : forward_impl<float>(p);
}
void attention_backward(const AttentionParams& p) {
  p.dtype == DType::f64 ? backward_impl<double>(p) : backward_impl<float>(p);
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
