// The GEMM engine of kernels/include/bigmodel/gemm.h, compiled once per ISA path (simd.h);
// kernels/cpu/gemm/gemm.cpp validates the parameters and dispatches here.
//
// Goto / BLIS structure, five loops around one micro-kernel:
//
//   for jc over N in NC steps                      B panel KC x NC lives in L3
//     for pc over Kt in KC steps                   (at least once, so K == 0 still writes C)
//       pack B[pc:+kc, jc:+nc] into NR-column panels        (skipped when B is pre-packed)
//       for ic over M in MC steps                  A block MC x KC lives in L2
//         pack A[ic:+mc, pc:+kc] into MR-row panels          (skipped when A is pre-packed)
//         for jr over nc in NR steps               B micro-panel KC x NR stays in L1
//           for ir over mc in MR steps
//             micro-tile: acc(MR x NR) = sum_k a[k] (x) b[k]; then merge into C
//
// The micro-tile keeps MR x NR/lanes vector accumulators in registers (AVX-512 fp32: 14 x 2
// zmm = 28), loads NR/lanes vectors of B per k and broadcasts MR scalars of A from memory, so
// the inner loop is MR*NR/lanes FMAs against NR/lanes + MR loads. Edge tiles use the same code
// instantiated for fewer rows (m < MR, no wasted FMAs) and fewer vectors, with masked moves only
// on the last vector of a row. alpha, beta, bias, relu and the caller's tile callback are applied
// while the tile is in registers / L1 (see the epilogue contract in gemm.h).
//
// Threads: C is cut into one rectangle per thread (whole MR / NR panels); each thread packs its
// own A and B blocks into its own scratch, so there are no shared writes and no barriers. With
// two threads this costs one extra pack of A (split along N) or of B (split along M), which is
// small next to the O(MNK) work; choose_split() weighs it.
#include <omp.h>

#include "bigmodel/gemm.h"
#include "cpu/simd.h"
#include "cpu/util.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// ---- the block-size table of this ISA path ---------------------------------------------------
// MR x NR is the register tile (NR = NV vectors). MC, KC, NC: the A block MC x KC is sized for
// L2 (1 MiB / core here), the B micro-panel KC x NR for L1 (48 KiB), the B panel KC x NC for L3.
// MC is a multiple of MR and NC of NR (thread and block edges then fall on panel edges, which the
// pre-packed layout needs).
template <typename T>
struct Blocking;

#if defined(BIGMODEL_BUILD_AVX512)
template <>
struct Blocking<float> {  // 14 x 32: 28 zmm accumulators + 2 for B
  // Measured on Zen 5 (single thread, thread CPU time, interleaved runs): MC 168 / KC 256 with
  // the A prefetch in tile() was the most even across square and skinny shapes; KC 384 was as
  // fast on squares but slower on the long-K weight-gradient shape, MC 336 / 504 within noise.
  static constexpr int MR = 14, NV = 2;
  static constexpr int64_t MC = 14 * 12, KC = 256, NC = 32 * 96;
};
template <>
struct Blocking<double> {  // 14 x 16
  static constexpr int MR = 14, NV = 2;
  static constexpr int64_t MC = 14 * 12, KC = 256, NC = 16 * 96;
};
#elif defined(BIGMODEL_BUILD_AVX2)
template <>
struct Blocking<float> {  // 6 x 16: 12 ymm accumulators + 2 for B + 1 broadcast
  static constexpr int MR = 6, NV = 2;
  static constexpr int64_t MC = 6 * 24, KC = 256, NC = 16 * 192;
};
template <>
struct Blocking<double> {  // 6 x 8
  static constexpr int MR = 6, NV = 2;
  static constexpr int64_t MC = 6 * 12, KC = 256, NC = 8 * 192;
};
#else
template <typename T>
struct Blocking {  // plain C++: a 4 x 4 tile of scalars
  static constexpr int MR = 4, NV = 4;
  static constexpr int64_t MC = 4 * 32, KC = 256, NC = 4 * 256;
};
#endif

template <typename T>
constexpr int kNR = Blocking<T>::NV * Vec<T>::size;

// ---- operands, normalised ------------------------------------------------------------------
// Both operands are seen as "outer x Kt" (A: outer = M; B: outer = N) with an outer stride `so`
// and a reduction stride `sk`, so C^T = B^T A^T is just a swap of the two descriptors.
template <typename T>
struct Operand {
  GemmOperandKind kind;
  const T* data;
  const T* const* items;
  int64_t so, sk;
  const T* packed;     // pre-packed panels, panel stride k_packed * P
  int64_t k_packed;    // the packed operand's own k_total (>= the GEMM's Kt: a k-prefix is used)
};

template <typename T>
Operand<T> normalise(const GemmOperand& op, GemmSide side) {
  Operand<T> r;
  r.kind = op.kind;
  r.data = static_cast<const T*>(op.data);
  r.items = reinterpret_cast<const T* const*>(op.items);
  r.so = side == GemmSide::a ? op.rs : op.cs;
  r.sk = side == GemmSide::a ? op.cs : op.rs;
  // (gemm_scratch_bytes may see a packed kind without a descriptor: sizing needs no data.)
  r.packed = op.kind == GemmOperandKind::packed && op.packed ? static_cast<const T*>(op.packed->data) : nullptr;
  r.k_packed = op.kind == GemmOperandKind::packed && op.packed ? op.packed->k_total : 0;
  return r;
}

// ---- packing ---------------------------------------------------------------------------------
// One panel: dst[k * P + q] = src[q * so + k * sk] for q < rows, 0 for rows <= q < P, k < kc.
// Contiguous outer (row-major B, column-major A): vector copies of P per k. Contiguous k
// (row-major A, transposed B): size x size blocks transposed in registers. Anything else, and
// the generic path, element by element.
template <typename T, int P>
void pack_panel(T* __restrict dst, const T* __restrict src, int64_t so, int64_t sk, int rows, int64_t kc) {
  using V = Vec<T>;
  constexpr int S = V::size, G = (P + S - 1) / S;  // G vectors of S lanes cover P
  if (so == 1 && rows == P && P % S == 0) {
    for (int64_t k = 0; k < kc; ++k) {
      const T* s = src + k * sk;
      T* d = dst + k * P;
#pragma GCC unroll 8
      for (int v = 0; v < G; ++v) V::load(s + v * S).store(d + v * S);
    }
    return;
  }
  if (so == 1 && S > 1) {  // partial panel or P not a multiple of S: masked moves, zero padding
    for (int64_t k = 0; k < kc; ++k) {
      const T* s = src + k * sk;
      T* d = dst + k * P;
#pragma GCC unroll 8
      for (int v = 0; v < G; ++v) {
        const int w = P - v * S < S ? P - v * S : S, n = rows - v * S;
        (n <= 0 ? V::zero() : V::load(s + v * S, n < w ? n : w)).store(d + v * S, w);
      }
    }
    return;
  }
  int64_t k_done = 0;
  if (sk == 1 && S > 1 && kc >= S) {
    k_done = kc - kc % S;
    for (int g = 0; g < G; ++g) {
      const int q0 = g * S, w = P - q0 < S ? P - q0 : S, n = rows - q0;
      for (int64_t k0 = 0; k0 < k_done; k0 += S) {
        V r[S];
#pragma GCC unroll 16
        for (int i = 0; i < S; ++i) r[i] = i < n ? V::load(src + (q0 + i) * so + k0) : V::zero();
        V::transpose(r);
#pragma GCC unroll 16
        for (int j = 0; j < S; ++j) r[j].store(dst + (k0 + j) * P + q0, w);
      }
    }
  }
  for (int64_t k = k_done; k < kc; ++k) {
    for (int q = 0; q < rows; ++q) dst[k * P + q] = src[q * so + k * sk];
    for (int q = rows; q < P; ++q) dst[k * P + q] = T(0);
  }
}

// Outer indices [o0, o0 + on) and reduction indices [k0, k0 + kc) of `op` into panels of P,
// panel p at dst + p * panel_stride. A batch operand's k range is split at item boundaries.
template <typename T, int P>
void pack_block(T* dst, int64_t panel_stride, const Operand<T>& op, int64_t K, int64_t o0, int64_t on, int64_t k0,
                int64_t kc) {
  for (int64_t p = 0; p * P < on; ++p) {
    const int rows = static_cast<int>(min64(P, on - p * P));
    T* d = dst + p * panel_stride;
    const int64_t o = o0 + p * P;
    if (op.kind == GemmOperandKind::strided) {
      pack_panel<T, P>(d, op.data + o * op.so + k0 * op.sk, op.so, op.sk, rows, kc);
      continue;
    }
    int64_t k = k0;
    while (k < k0 + kc) {  // batch: one segment per item touched
      const int64_t t = k / K, kk = k - t * K;
      const int64_t len = min64(K - kk, k0 + kc - k);
      pack_panel<T, P>(d + (k - k0) * P, op.items[t] + o * op.so + kk * op.sk, op.so, op.sk, rows, len);
      k += len;
    }
  }
}

// ---- the micro-tile and its epilogue ---------------------------------------------------------
enum class Merge : int { overwrite = 0, scale_add = 1, accumulate = 2 };  // C = ..., + beta*C, + C

template <typename T>
struct TileStore {
  T alpha, beta;
  Merge merge;
  bool last;  // the final K block: apply bias, activation and callback
  GemmBias bias_kind;
  const T* bias;
  GemmActivation act;
  GemmTileCallback callback;
  void* callback_ctx;
  bool transposed;  // the problem was turned into C^T = B^T A^T: report tiles untransposed
};

template <typename T>
BM_INLINE T merge_scalar(T acc, T* c, const TileStore<T>& s, T bias) {
  T r = acc * s.alpha;
  if (s.merge == Merge::accumulate)
    r += *c;
  else if (s.merge == Merge::scale_add)
    r += s.beta * *c;
  if (s.last) {
    r += bias;
    if (s.act == GemmActivation::relu) r = T(0) > r ? T(0) : r;  // NaN stays NaN, as torch.relu
  }
  return r;
}

// acc[M x NV vectors] = A panel (kc x MR, first M rows used) * B panel (kc x NR); then merged
// into C rows [0, M) x columns [0, n) at c. M and NV are compile-time (edge tiles are their own
// instantiations), n is the valid column count (masks only on the last vector of a row).
template <typename T, int M, int NV>
void tile(int64_t kc, const T* __restrict a, const T* __restrict b, T* c, int64_t rs_c, int64_t cs_c, int n,
          int64_t row0, int64_t col0, const TileStore<T>& s) {
  using V = Vec<T>;
  constexpr int S = V::size, MR = Blocking<T>::MR, NR = kNR<T>;
  V acc[M][NV];
#pragma GCC unroll 32
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = V::zero();

  // C is read after the k loop (beta != 0 or a later K block); fetch its lines now, so a C that
  // sits in memory (the LSTM's gate pre-activations, written long before) does not stall the merge.
  if (s.merge != Merge::overwrite && cs_c == 1) {
#pragma GCC unroll 32
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < (NV * S * static_cast<int>(sizeof(T)) + 63) / 64; ++j)
        __builtin_prefetch(reinterpret_cast<const char*>(c + i * rs_c) + 64 * j, 0, 3);
  }

#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bv[j] = V::load(b + j * S);
#pragma GCC unroll 32
    for (int i = 0; i < M; ++i) {
      const V av = V::broadcast(a[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
    // The A micro-panel streams from L2 while B stays in L1: fetch A ~12 k-steps ahead.
    __builtin_prefetch(a + 12 * MR, 0, 3);
    a += MR;
    b += NR;
  }

  const T* bias_row = s.last && s.bias_kind == GemmBias::per_row ? s.bias + row0 : nullptr;
  const T* bias_col = s.last && s.bias_kind == GemmBias::per_col ? s.bias + col0 : nullptr;
  if (cs_c == 1) {
    const V va = V::broadcast(s.alpha), vb = V::broadcast(s.beta), zero = V::zero();
#pragma GCC unroll 32
    for (int i = 0; i < M; ++i) {
      T* crow = c + i * rs_c;
      const V brow = V::broadcast(bias_row ? bias_row[i] : T(0));
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) {
        const int w = n - j * S >= S ? S : n - j * S;
        if (w <= 0) break;
        V r = acc[i][j] * va;
        if (s.merge == Merge::accumulate)
          r = r + V::load(crow + j * S, w);
        else if (s.merge == Merge::scale_add)
          r = V::fma(vb, V::load(crow + j * S, w), r);
        if (s.last) {
          if (bias_row) r = r + brow;
          if (bias_col) r = r + V::load(bias_col + j * S, w);
          if (s.act == GemmActivation::relu) r = V::max(zero, r);
        }
        r.store(crow + j * S, w);
      }
    }
  } else {  // general C strides: spill the tile, then merge element by element
    T buf[M * NV * S];
#pragma GCC unroll 32
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j].store(buf + (i * NV + j) * S);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < n; ++j) {
        T* cij = c + i * rs_c + j * cs_c;
        const T bias = bias_row ? bias_row[i] : bias_col ? bias_col[j] : T(0);
        *cij = merge_scalar(buf[i * NV * S + j], cij, s, bias);
      }
  }
  if (s.last && s.callback) {
    if (s.transposed)
      s.callback(s.callback_ctx, c, cs_c, rs_c, col0, row0, n, M);
    else
      s.callback(s.callback_ctx, c, rs_c, cs_c, row0, col0, M, n);
  }
}

template <typename T>
using TileFn = void (*)(int64_t, const T*, const T*, T*, int64_t, int64_t, int, int64_t, int64_t,
                        const TileStore<T>&);

template <typename T, int M, int NV>
TileFn<T> pick_nv(int nv) {
  if constexpr (NV == 0) {
    return nullptr;
  } else {
    return nv == NV ? &tile<T, M, NV> : pick_nv<T, M, NV - 1>(nv);
  }
}

template <typename T, int M>
TileFn<T> pick_tile(int m, int nv) {
  if constexpr (M == 0) {
    return nullptr;
  } else {
    return m == M ? pick_nv<T, M, Blocking<T>::NV>(nv) : pick_tile<T, M - 1>(m, nv);
  }
}

// ---- the macro-kernel and the per-thread driver ----------------------------------------------
template <typename T>
struct Problem {
  int64_t M, N, K, Kt;
  Operand<T> a, b;
  T* c;
  int64_t rs_c, cs_c;
  T alpha, beta;
  GemmEpilogue epi;
  bool transposed;
};

// C rows [ic, ic + mc) x cols [jc, jc + nc) from packed A panels (stride a_ps) and B panels
// (stride b_ps), each kc long.
template <typename T>
void macro_kernel(const Problem<T>& pr, const T* ap, int64_t a_ps, const T* bp, int64_t b_ps, int64_t ic,
                  int64_t mc, int64_t jc, int64_t nc, int64_t kc, const TileStore<T>& st) {
  constexpr int MR = Blocking<T>::MR, NR = kNR<T>, S = Vec<T>::size;
  const TileFn<T> full = pick_tile<T, MR>(MR, Blocking<T>::NV);
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int n = static_cast<int>(min64(NR, nc - jr));
    const int nv = static_cast<int>(ceil_div(n, S));
    const T* b = bp + (jr / NR) * b_ps;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = static_cast<int>(min64(MR, mc - ir));
      const TileFn<T> fn = (m == MR && nv == Blocking<T>::NV) ? full : pick_tile<T, MR>(m, nv);
      const int64_t row = ic + ir, col = jc + jr;
      fn(kc, ap + (ir / MR) * a_ps, b, pr.c + row * pr.rs_c + col * pr.cs_c, pr.rs_c, pr.cs_c, n, row, col, st);
    }
  }
}

// Block sizes for this part of the problem: equal-sized blocks no larger than the table's.
BM_INLINE int64_t block_step(int64_t extent, int64_t max_block, int64_t multiple) {
  if (extent <= 0) return multiple;
  const int64_t blocks = ceil_div(extent, max_block);
  return round_up(ceil_div(extent, blocks), multiple);
}

template <typename T>
int64_t kc_step(int64_t Kt) {
  return Kt == 0 ? 0 : block_step(Kt, Blocking<T>::KC, 1);
}

// Scratch (elements) a thread needs for C rectangles of at most mt x nt, plus alignment slack.
// block_step(x, max, mult) <= min(round_up(x, mult), max) for max a multiple of mult, and that
// bound grows with x, so the largest rectangle's figure covers every smaller one.
template <typename T>
int64_t thread_scratch_elems(const Problem<T>& pr, int64_t mt, int64_t nt) {
  constexpr int MR = Blocking<T>::MR, NR = kNR<T>;
  const int64_t kc = max64(min64(pr.Kt, Blocking<T>::KC), 1);
  int64_t e = 0;
  if (pr.a.kind != GemmOperandKind::packed) e += min64(round_up(mt, MR), Blocking<T>::MC) * kc;
  if (pr.b.kind != GemmOperandKind::packed) e += min64(round_up(nt, NR), Blocking<T>::NC) * kc;
  return e + 2 * 64 / static_cast<int64_t>(sizeof(T));
}

// The five loops for C rows [m0, m0 + mt) x cols [n0, n0 + nt), on one thread.
template <typename T>
void run_rect(const Problem<T>& pr, int64_t m0, int64_t mt, int64_t n0, int64_t nt, T* scratch) {
  constexpr int MR = Blocking<T>::MR, NR = kNR<T>;
  if (mt <= 0 || nt <= 0) return;
  const int64_t kc_max = kc_step<T>(pr.Kt);
  const int64_t mc_max = block_step(mt, Blocking<T>::MC, MR), nc_max = block_step(nt, Blocking<T>::NC, NR);
  T* a_buf = align64(scratch);
  T* b_buf = pr.a.kind == GemmOperandKind::packed ? a_buf : align64(a_buf + mc_max * max64(kc_max, 1));

  TileStore<T> st;
  st.alpha = pr.alpha;
  st.beta = pr.beta;
  st.bias_kind = pr.epi.bias_kind;
  st.bias = static_cast<const T*>(pr.epi.bias);
  st.act = pr.epi.activation;
  st.callback = pr.epi.callback;
  st.callback_ctx = pr.epi.callback_ctx;
  st.transposed = pr.transposed;

  for (int64_t jc = n0; jc < n0 + nt; jc += nc_max) {
    const int64_t nc = min64(nc_max, n0 + nt - jc);
    int64_t pc = 0;
    do {  // at least one pass: K == 0 still merges beta*C, bias and activation
      const int64_t kc = min64(kc_max, pr.Kt - pc);
      st.merge = pc > 0 ? Merge::accumulate : (pr.beta == T(0) ? Merge::overwrite : Merge::scale_add);
      st.last = pc + kc >= pr.Kt;
      const T* bp;
      int64_t b_ps;
      if (pr.b.kind == GemmOperandKind::packed) {
        bp = pr.b.packed + (jc / NR) * pr.b.k_packed * NR + pc * NR;
        b_ps = pr.b.k_packed * NR;
      } else {
        pack_block<T, NR>(b_buf, kc * NR, pr.b, pr.K, jc, nc, pc, kc);
        bp = b_buf;
        b_ps = kc * NR;
      }
      for (int64_t ic = m0; ic < m0 + mt; ic += mc_max) {
        const int64_t mc = min64(mc_max, m0 + mt - ic);
        const T* ap;
        int64_t a_ps;
        if (pr.a.kind == GemmOperandKind::packed) {
          ap = pr.a.packed + (ic / MR) * pr.a.k_packed * MR + pc * MR;
          a_ps = pr.a.k_packed * MR;
        } else {
          pack_block<T, MR>(a_buf, kc * MR, pr.a, pr.K, ic, mc, pc, kc);
          ap = a_buf;
          a_ps = kc * MR;
        }
        macro_kernel<T>(pr, ap, a_ps, bp, b_ps, ic, mc, jc, nc, kc, st);
      }
      pc += kc;
    } while (pc < pr.Kt);
  }
}

template <typename T>
Problem<T> make_problem(const GemmParams& p) {
  Problem<T> pr;
  pr.M = p.M;
  pr.N = p.N;
  pr.K = p.K;
  pr.Kt = p.K * p.batch_count;
  pr.a = normalise<T>(p.a, GemmSide::a);
  pr.b = normalise<T>(p.b, GemmSide::b);
  pr.c = static_cast<T*>(p.c);
  pr.rs_c = p.rs_c;
  pr.cs_c = p.cs_c;
  pr.alpha = static_cast<T>(p.alpha);
  pr.beta = static_cast<T>(p.beta);
  pr.epi = p.epilogue;
  pr.transposed = false;
  // A column-major C is computed as C^T = B^T A^T, whose rows are contiguous; the packed
  // layouts are side-specific, so a pre-packed operand keeps the general-stride store instead.
  if (p.cs_c != 1 && p.rs_c == 1 && pr.a.kind != GemmOperandKind::packed &&
      pr.b.kind != GemmOperandKind::packed) {
    const Operand<T> t = pr.a;
    pr.a = pr.b;
    pr.b = t;
    pr.M = p.N;
    pr.N = p.M;
    pr.rs_c = p.cs_c;
    pr.cs_c = 1;
    if (pr.epi.bias_kind == GemmBias::per_row)
      pr.epi.bias_kind = GemmBias::per_col;
    else if (pr.epi.bias_kind == GemmBias::per_col)
      pr.epi.bias_kind = GemmBias::per_row;
    pr.transposed = true;
  }
  return pr;
}

// Splits C among at most `threads` threads as a tm x tn grid of whole panels, minimising the
// largest thread's cost: its FMAs plus what it packs (packing an element costs about as much as
// kPackCost FMA lanes).
template <typename T>
void choose_split(const Problem<T>& pr, int threads, int& tm, int& tn) {
  constexpr int MR = Blocking<T>::MR, NR = kNR<T>;
  constexpr double kPackCost = 16.0;
  const int64_t mp = ceil_div(pr.M, MR), np = ceil_div(pr.N, NR);
  const double kt = static_cast<double>(max64(pr.Kt, 1));
  double best = -1;
  tm = tn = 1;
  for (int a = 1; a <= threads && a <= mp; ++a) {
    for (int b = 1; a * b <= threads && b <= np; ++b) {
      const int64_t mt = ceil_div(mp, a) * MR, nt = ceil_div(np, b) * NR;
      double cost = static_cast<double>(mt) * static_cast<double>(nt) * kt;
      if (pr.a.kind != GemmOperandKind::packed)
        cost += kPackCost * static_cast<double>(mt) * kt * static_cast<double>(ceil_div(nt, Blocking<T>::NC));
      if (pr.b.kind != GemmOperandKind::packed) cost += kPackCost * static_cast<double>(nt) * kt;
      if (best < 0 || cost < best * 0.999) {
        best = cost;
        tm = a;
        tn = b;
      }
    }
  }
}

template <typename T>
void run_threaded(const GemmParams& p, int threads) {
  const Problem<T> pr = make_problem<T>(p);
  if (pr.M == 0 || pr.N == 0) return;
  constexpr int MR = Blocking<T>::MR, NR = kNR<T>;
  // Below ~0.5 M FMAs a fork/join costs more than a second thread saves.
  const double fmas = static_cast<double>(pr.M) * static_cast<double>(pr.N) * static_cast<double>(max64(pr.Kt, 1));
  int tm = 1, tn = 1;
  if (threads > 1 && fmas >= 524288.0) choose_split(pr, threads, tm, tn);
  const int used = tm * tn;
  const int64_t mp = ceil_div(pr.M, MR), np = ceil_div(pr.N, NR);
  const int64_t mt_max = ceil_div(mp, tm) * MR, nt_max = ceil_div(np, tn) * NR;
  const int64_t elems = thread_scratch_elems(pr, min64(mt_max, pr.M), min64(nt_max, pr.N));
  const AlignedBuffer scratch_mem = AlignedBuffer::of<T>(elems * used);  // before the region: may throw
  T* const scratch = scratch_mem.as<T>();
#pragma omp parallel num_threads(used) if (used > 1)
  {
    const int nthr = omp_get_num_threads(), id = omp_get_thread_num();
    for (int r = id; r < used; r += nthr) {  // one rectangle each unless the runtime gave fewer threads
      const int i = r / tn, j = r % tn;
      const int64_t m0 = min64(pr.M, i * mt_max), n0 = min64(pr.N, j * nt_max);
      run_rect<T>(pr, m0, min64(mt_max, pr.M - m0), n0, min64(nt_max, pr.N - n0), scratch + id * elems);
    }
  }
}

// ---- pre-packing -----------------------------------------------------------------------------
template <typename T, int P>
void pack_all(const GemmPackParams& p) {
  const Operand<T> op = normalise<T>(p.src, p.side);
  const int64_t Kt = p.K * p.batch_count, panels = ceil_div(p.outer, P);
  T* dst = static_cast<T*>(p.dst);
  const int threads = omp_in_parallel() ? 1 : p.num_threads;
#pragma omp parallel for num_threads(threads) if (threads > 1 && panels * Kt * P > 65536) schedule(static)
  for (int64_t q = 0; q < panels; ++q) {
    T* d = dst + q * Kt * P;
    if (Kt > 0) pack_block<T, P>(d, Kt * P, op, p.K, q * P, min64(P, p.outer - q * P), 0, Kt);
  }
}

template <typename T>
GemmBlocking blocking_of() {
  GemmBlocking b;
  b.MR = Blocking<T>::MR;
  b.NR = kNR<T>;
  b.MC = Blocking<T>::MC;
  b.KC = Blocking<T>::KC;
  b.NC = Blocking<T>::NC;
  return b;
}

template <typename T>
void pack_typed(const GemmPackParams& p) {
  if (p.side == GemmSide::a)
    pack_all<T, Blocking<T>::MR>(p);
  else
    pack_all<T, kNR<T>>(p);
}

template <typename T>
int64_t scratch_bytes_typed(const GemmParams& p) {
  const Problem<T> pr = make_problem<T>(p);
  if (pr.M == 0 || pr.N == 0) return 0;
  if (pr.a.kind == GemmOperandKind::packed && pr.b.kind == GemmOperandKind::packed) return 0;
  return thread_scratch_elems(pr, pr.M, pr.N) * static_cast<int64_t>(sizeof(T));
}

template <typename T>
void run_single(const GemmParams& p, void* scratch) {
  const Problem<T> pr = make_problem<T>(p);
  run_rect<T>(pr, 0, pr.M, 0, pr.N, static_cast<T*>(scratch));
}

}  // namespace

// ---- entry points (declared in kernels/cpu/gemm/gemm.cpp through BIGMODEL_ISA_DECLARE) -------

GemmBlocking gemm_blocking(DType dtype) { return BIGMODEL_FLOAT_SWITCH(dtype, T, [&] { return blocking_of<T>(); }); }
void gemm_threaded(const GemmParams& p, int threads) {
  BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { run_threaded<T>(p, threads); });
}
int64_t gemm_scratch_bytes(const GemmParams& p) {
  return BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { return scratch_bytes_typed<T>(p); });
}
void gemm_single_thread(const GemmParams& p, void* scratch) {
  BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { run_single<T>(p, scratch); });
}

void gemm_pack(const GemmPackParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { pack_typed<T>(p); }); }

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
