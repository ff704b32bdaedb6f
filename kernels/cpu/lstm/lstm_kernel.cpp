// LSTM layer on the CPU, forward and backward (see kernels/include/bigmodel/lstm.h for the math).
// Compiled once per ISA path (see kernels/cpu/simd.h); kernels/cpu/lstm/lstm.cpp validates and
// dispatches here.
//
// Forward
//   1. gates (T*B, 4H) = X (T*B, I) W_ih^T + (b_ih + b_hh): one multi-threaded GEMM.
//   2. One OpenMP region for the recurrence: per step, G_t += h_{t-1} W_hh^T on a W_hh packed
//      once (gemm_single_thread, beta = 1), then, while that block is still in L2, the gate
//      nonlinearities and the c/h update, overwriting the pre-activations with the activated
//      gates (which the backward reads). The work is split one of two ways:
//      - by batch rows (B >= 16 per thread, or one thread): batch rows never interact, so each
//        thread runs its rows through all T steps with no barrier at all; W_hh^T (K = H,
//        N = 4H) is packed once and shared read-only, and each step is one GEMM per thread;
//      - by hidden units (small batches): thread k owns units [j0, j1), packs the four gate
//        slices of W_hh^T that feed them, packs h_{t-1} once per step and runs four B x w x H
//        products; one barrier per step, since the next step reads all of h_t.
//   3. Inference (no gates / cells to save): no whole-sequence projection; each step is one GEMM
//      G = [x_t | h_{t-1}] [W_ih | W_hh]^T + b into a gate block that stays in cache, split the
//      same two ways (see forward_inference).
// Backward (BPTT), one region, split the same way:
//      pointwise: dG_t from dh = grad_output[t] + dh_rec and the saved gates / cells, dc carried
//      in place, db accumulated (per thread) while dG_t is hot; then dh_rec = dG_t W_hh on a
//      pre-packed W_hh (K = 4H). By rows: no barrier; by units: one barrier per step (the
//      GEMM for the thread's units reads all of dG_t).
//   Afterwards three multi-threaded GEMMs over all T steps at once:
//      dW_ih = dG^T X,  dW_hh = sum_t dG_t^T h_{t-1} (batch-reduce over t),  dX = dG W_ih.
//
// float32 uses a rational tanh (max abs error 3.5e-7, sigmoid(x) = (1 + tanh(x/2)) / 2) in
// vector registers; float64 uses <cmath> and is accurate to the last bits (gradcheck).
#include <omp.h>

#include "bigmodel/gemm.h"
#include "bigmodel/lstm.h"
#include "cpu/lstm/lstm_pointwise.h"
#include "cpu/simd.h"
#include "cpu/transpose.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// ---- work split --------------------------------------------------------------------------------

constexpr int64_t kUnitStep = 16;     // hidden units are split between threads in multiples of this
constexpr int64_t kRowsPerThread = 16;  // split by batch rows when every thread gets at least this many

struct Split {
  int threads;
  bool by_rows;
};

// Below ~256 kFLOP per step one thread does it all (a step must be worth a barrier, ~1-2 us).
// Otherwise split by rows when the batch is large enough (no barriers, one GEMM per step),
// else by hidden units (each thread needs at least one kUnitStep of units).
Split recurrence_split(const LstmParams& p) {
  int64_t nt = p.num_threads < 1 ? 1 : p.num_threads;
  if (2 * p.B * 4 * p.H * p.H < (int64_t(1) << 18)) nt = 1;
  if (nt == 1 || p.B >= kRowsPerThread * nt) return {static_cast<int>(nt), true};
  const int64_t chunks = (p.H + kUnitStep - 1) / kUnitStep;
  if (nt > chunks) nt = chunks;
  return {static_cast<int>(nt), false};
}

// Rows [b0, b1) of thread `k` of `nt`.
BM_INLINE void thread_rows(int64_t B, int k, int nt, int64_t& b0, int64_t& b1) {
  b0 = B * k / nt;
  b1 = B * (k + 1) / nt;
}

// Units [j0, j1) of thread `k` of `nt`.
BM_INLINE void thread_units(int64_t H, int k, int nt, int64_t& j0, int64_t& j1) {
  const int64_t chunks = (H + kUnitStep - 1) / kUnitStep;
  j0 = min64(H, chunks * k / nt * kUnitStep);
  j1 = min64(H, chunks * (k + 1) / nt * kUnitStep);
}

BM_INLINE GemmOperand strided(const void* data, int64_t rs, int64_t cs) {
  GemmOperand o;
  o.kind = GemmOperandKind::strided;
  o.data = data;
  o.rs = rs;
  o.cs = cs;
  return o;
}

BM_INLINE GemmOperand packed(const GemmPacked* pk) {
  GemmOperand o;
  o.kind = GemmOperandKind::packed;
  o.packed = pk;
  return o;
}

// Packs the K x w matrix B(k, n) = src[k * rs + n * cs] (a slice of W_hh or W_hh^T) into `dst`.
GemmPacked pack_b(DType dt, const void* src, int64_t rs, int64_t cs, int64_t K, int64_t w, void* dst,
                  int threads = 1) {
  GemmPackParams pp;
  pp.dtype = dt;
  pp.side = GemmSide::b;
  pp.outer = w;
  pp.K = K;
  pp.src = strided(src, rs, cs);
  pp.dst = dst;
  pp.num_threads = threads;
  return gemm_pack(pp);
}

// Packs the rows x K row-major matrix src (leading dimension K) as an A operand into `dst`.
GemmPacked pack_a(DType dt, const void* src, int64_t rows, int64_t K, void* dst, int threads = 1) {
  GemmPackParams pp;
  pp.dtype = dt;
  pp.side = GemmSide::a;
  pp.outer = rows;
  pp.K = K;
  pp.src = strided(src, K, 1);
  pp.dst = dst;
  pp.num_threads = threads;
  return gemm_pack(pp);
}

BM_INLINE int64_t align64(int64_t bytes) { return (bytes + 63) & ~int64_t(63); }
BM_INLINE int64_t round_up64(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// Number of rows with lengths[b] > s (lengths non-increasing); B without lengths.
BM_INLINE int64_t active_rows(const int64_t* lengths, int64_t B, int64_t s) {
  if (!lengths) return B;
  int64_t lo = 0, hi = B;  // first row with lengths <= s
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (lengths[mid] > s)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// The end of the rows [b0, ...) of [b0, b1) that take part in step s (a prefix; see active_rows).
BM_INLINE int64_t live_end(const int64_t* lengths, int64_t B, int64_t s, int64_t b0, int64_t b1) {
  const int64_t active = active_rows(lengths, B, s);
  return active < b0 ? b0 : (active > b1 ? b1 : active);
}

// b_ih + b_hh (4H) into `mem`, or null without bias.
template <typename T>
T* combined_bias(const LstmParams& p, Buffer& mem) {
  if (!p.has_bias) return nullptr;
  const int64_t G4 = 4 * p.H;
  mem.reset(G4 * sizeof(T));
  T* b = reinterpret_cast<T*>(mem.data());
  const T* bi = static_cast<const T*>(p.b_ih);
  const T* bh = static_cast<const T*>(p.b_hh);
  for (int64_t r = 0; r < G4; ++r) b[r] = bi[r] + bh[r];
  return b;
}

// ---- forward -----------------------------------------------------------------------------------

// The recurrence split by batch rows: thread k runs rows [b0, b1) through every step, alone.
//   gates (T, B, 4H): x_t W_ih^T + b in, activated gates out;  hb: two (B, H) state buffers
template <typename T>
void forward_by_rows(const LstmParams& p, T* const hb[2], int nt) {
  const int64_t T_ = p.T, B = p.B, H = p.H, G4 = 4 * H;
  T* gates = static_cast<T*>(p.gates);
  T* cells = static_cast<T*>(p.cells);
  T* output = static_cast<T*>(p.output);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);
  const bool work = T_ > 0 && B > 0;

  // W_hh^T (K = H, N = 4H), packed once and read by every thread.
  Buffer w_mem;
  GemmPacked w_packed;
  if (work) {
    w_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::b, G4, H));
    w_packed = pack_b(p.dtype, p.w_hh, 1, H, H, G4, w_mem.data(), p.num_threads);
  }

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t b0, b1;
    thread_rows(B, omp_get_thread_num(), omp_get_num_threads(), b0, b1);
    Buffer scratch;
    GemmParams gp;
    if (work && b1 > b0) {
      gp.dtype = p.dtype;
      gp.M = b1 - b0;
      gp.N = G4;
      gp.K = H;
      gp.a = strided(h0 + b0 * H, H, 1);
      gp.b = packed(&w_packed);
      gp.c = gates + b0 * G4;
      gp.rs_c = G4;
      gp.cs_c = 1;
      gp.beta = 1.0;
      scratch.reset(gemm_scratch_bytes(gp) + 64);
    }
    for (int64_t s = 0; s < T_ && b1 > b0; ++s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t t_prev = p.reverse ? t + 1 : t - 1;
      const T* h_prev = s == 0 ? h0 : hb[(s - 1) & 1];
      T* h_next = hb[s & 1];
      const T* c_prev = s == 0 ? c0 : cells + t_prev * B * H;
      T* g_t = gates + t * B * G4;
      const int64_t b_live = live_end(p.lengths, B, s, b0, b1);  // rows [b0, b_live) run
      if (b_live > b0) {
        gp.M = b_live - b0;
        gp.a = strided(h_prev + b0 * H, H, 1);
        gp.c = g_t + b0 * G4;
        gemm_single_thread(gp, scratch.data(), scratch.bytes());
      }
      for (int64_t b = b0; b < b_live; ++b)
        cell_forward_row(g_t + b * G4, c_prev + b * H, cells + (t * B + b) * H, output + (t * B + b) * H,
                         h_next + b * H, H, 0, H);
      for (int64_t b = b_live; b < b1; ++b) {  // past this row's length: carry the state
        copy_units(cells + (t * B + b) * H, c_prev + b * H, 0, H);
        copy_units(h_next + b * H, h_prev + b * H, 0, H);
        copy_units<T>(output + (t * B + b) * H, nullptr, 0, H);
      }
    }
    const T* h_last = T_ == 0 ? h0 : hb[(T_ - 1) & 1];
    const T* c_last = T_ == 0 ? c0 : cells + (p.reverse ? 0 : T_ - 1) * B * H;
    for (int64_t b = b0; b < b1; ++b) {
      copy_units(static_cast<T*>(p.h_n) + b * H, h_last + b * H, 0, H);
      copy_units(static_cast<T*>(p.c_n) + b * H, c_last + b * H, 0, H);
    }
  }
}

// Inference (gates == cells == nullptr): nothing of the T steps is kept, so nothing of them goes
// through memory. Each step is ONE GEMM over K = I + H,
//   G = [x_t | h_{t-1}] [W_ih | W_hh]^T + (b_ih + b_hh)          beta = 0
// on the concatenated weight packed once per call, into a gate block that stays in cache, then
// the cell update, which writes h_t straight into the next step's A operand. Against the
// training path (the input projection of all T steps as one GEMM into the saved (T, B, 4H)
// gates, then per step G_t += h_{t-1} W_hh^T) this saves three passes over the gates in memory
// and one or two C merges per step; the GEMM work is the same. Every element is reduced in the
// same order whichever way the work is split, so inference is bitwise identical at any thread
// count; against the training path it differs by float32 rounding (the sums are grouped
// differently).
//   wcat: [W_ih | W_hh] (4H, K) row-major; bias: 4H or null.
template <typename T>
void inference_by_rows(const LstmParams& p, int nt, const T* wcat, const T* bias) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H, K = I + H;
  const T* x = static_cast<const T*>(p.input);
  T* output = static_cast<T*>(p.output);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);
  T* h_n = static_cast<T*>(p.h_n);
  T* c_n = static_cast<T*>(p.c_n);
  // [W_ih | W_hh]^T (K x 4H), packed once and read by every thread.
  Buffer w_mem(gemm_packed_bytes(p.dtype, GemmSide::b, G4, K));
  const GemmPacked w = pack_b(p.dtype, wcat, 1, K, K, G4, w_mem.data(), p.num_threads);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t b0, b1;
    thread_rows(B, omp_get_thread_num(), omp_get_num_threads(), b0, b1);
    const int64_t rows = b1 - b0;
    // Per thread: A = [x_t | h] (rows, K), the gate block (rows, 4H), c (rows, H), GEMM scratch.
    Buffer a_mem(rows * K * sizeof(T)), g_mem(rows * G4 * sizeof(T)), c_mem(rows * H * sizeof(T)), scratch;
    T* a = reinterpret_cast<T*>(a_mem.data());
    T* g = reinterpret_cast<T*>(g_mem.data());
    T* c = reinterpret_cast<T*>(c_mem.data());
    for (int64_t r = 0; r < rows; ++r) {
      copy_units(a + r * K + I, h0 + (b0 + r) * H, 0, H);
      copy_units(c + r * H, c0 + (b0 + r) * H, 0, H);
    }
    GemmParams gp;
    gp.dtype = p.dtype;
    gp.M = rows;
    gp.N = G4;
    gp.K = K;
    gp.a = strided(a, K, 1);
    gp.b = packed(&w);
    gp.c = g;
    gp.rs_c = G4;
    gp.beta = 0.0;
    if (bias) {
      gp.epilogue.bias_kind = GemmBias::per_col;
      gp.epilogue.bias = bias;
    }
    if (rows > 0) scratch.reset(gemm_scratch_bytes(gp) + 64);

    for (int64_t s = 0; s < T_ && rows > 0; ++s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t live = live_end(p.lengths, B, s, b0, b1) - b0;  // rows [0, live) run
      for (int64_t r = 0; r < live; ++r) copy_units(a + r * K, x + (t * B + b0 + r) * I, 0, I);
      if (live > 0) {
        gp.M = live;
        gemm_single_thread(gp, scratch.data(), scratch.bytes());
      }
      for (int64_t r = 0; r < live; ++r)
        cell_forward_row(g + r * G4, c + r * H, c + r * H, output + (t * B + b0 + r) * H, a + r * K + I, H, 0, H);
      for (int64_t r = live; r < rows; ++r)  // past this row's length: zeros out, the state is carried
        copy_units<T>(output + (t * B + b0 + r) * H, nullptr, 0, H);
    }
    for (int64_t r = 0; r < rows; ++r) {
      copy_units(h_n + (b0 + r) * H, a + r * K + I, 0, H);
      copy_units(c_n + (b0 + r) * H, c + r * H, 0, H);
    }
  }
}

// inference_by_rows with the product transposed, for thread row counts that fill whole NR-wide
// register tiles (32 or 64 rows on AVX-512, where M = rows would leave a partial 14-row tile):
//   G^T = [W_ih | W_hh] [x_t | h_{t-1}]^T + b        M = 4H, N = rows, K = I + H
// with the weight packed once as the A operand, and the state kept transposed (units x rows):
// the B operand's lower H rows are h^T, written by the cell update (vectors over batch rows),
// its upper I rows x_t^T, copied in each step. Every element is the same sum in the same order
// as in the untransposed form (a * b == b * a, same k blocks), so the results are bitwise equal.
template <typename T>
void inference_by_rows_t(const LstmParams& p, int nt, const T* wcat, const T* bias) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H, K = I + H;
  const T* x = static_cast<const T*>(p.input);
  T* output = static_cast<T*>(p.output);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);
  T* h_n = static_cast<T*>(p.h_n);
  T* c_n = static_cast<T*>(p.c_n);
  // [W_ih | W_hh] (4H x K), packed once as the A operand and read by every thread.
  Buffer w_mem(gemm_packed_bytes(p.dtype, GemmSide::a, G4, K));
  const GemmPacked w = pack_a(p.dtype, wcat, G4, K, w_mem.data(), p.num_threads);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t b0, b1;
    thread_rows(B, omp_get_thread_num(), omp_get_num_threads(), b0, b1);
    const int64_t R = b1 - b0;  // this thread's rows: the leading dimension of its transposed blocks
    // Per thread: B = [x_t^T ; h^T] (K, R), G^T (4H, R), c^T (H, R), GEMM scratch.
    Buffer b_mem(K * R * sizeof(T)), g_mem(G4 * R * sizeof(T)), c_mem(H * R * sizeof(T)), scratch;
    T* bt = reinterpret_cast<T*>(b_mem.data());
    T* ht = bt + I * R;
    T* g = reinterpret_cast<T*>(g_mem.data());
    T* c = reinterpret_cast<T*>(c_mem.data());
    transpose_2d(h0 + b0 * H, H, ht, R, R, H);
    transpose_2d(c0 + b0 * H, H, c, R, R, H);
    GemmParams gp;
    gp.dtype = p.dtype;
    gp.M = G4;
    gp.N = R;
    gp.K = K;
    gp.a = packed(&w);
    gp.b = strided(bt, R, 1);
    gp.c = g;
    gp.rs_c = R;
    gp.beta = 0.0;
    if (bias) {
      gp.epilogue.bias_kind = GemmBias::per_row;
      gp.epilogue.bias = bias;
    }
    if (R > 0) scratch.reset(gemm_scratch_bytes(gp) + 64);

    for (int64_t s = 0; s < T_ && R > 0; ++s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t live = live_end(p.lengths, B, s, b0, b1) - b0;  // rows [0, live) run
      const T* xt = x + (t * B + b0) * I;
      transpose_2d(xt, I, bt, R, live, I);
      if (live > 0) {
        gp.N = live;
        gemm_single_thread(gp, scratch.data(), scratch.bytes());
      }
      // Unit j's four gates for rows [0, live) sit at g[(q H + j) R + r]: cell_forward_row's
      // layout with a gate stride of H * R, run over the rows instead of the units.
      for (int64_t j = 0; j < H && live > 0; ++j)
        cell_forward_row(g + j * R, c + j * R, c + j * R, ht + j * R, ht + j * R, H * R, 0, live);
      T* out = output + (t * B + b0) * H;
      transpose_2d(ht, R, out, H, H, live);
      for (int64_t r = live; r < R; ++r)  // past this row's length: zeros out, the state is carried
        copy_units<T>(out + r * H, nullptr, 0, H);
    }
    transpose_2d(ht, R, h_n + b0 * H, H, H, R);
    transpose_2d(c, R, c_n + b0 * H, H, H, R);
  }
}

// Inference split by hidden units (small batches on several threads): thread k owns units
// [j0, j1) and, per step, packs [x_t | h_{t-1}] (all rows) once as the A operand of four
// products with its slices of [W_ih | W_hh]^T (one per gate, packed once), into a (B, 4w) gate
// block; h_t goes to a shared ping-pong buffer, one barrier per step.
template <typename T>
void inference_by_units(const LstmParams& p, int nt, const T* wcat, const T* bias) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, K = I + H;
  const T* x = static_cast<const T*>(p.input);
  T* output = static_cast<T*>(p.output);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);
  T* h_n = static_cast<T*>(p.h_n);
  T* c_n = static_cast<T*>(p.c_n);
  // Shared: h ping-pong (h0 first) and c, each (B, H); every thread updates its own units.
  Buffer state(3 * B * H * sizeof(T));
  T* c = reinterpret_cast<T*>(state.data());
  T* const hb[2] = {c + B * H, c + 2 * B * H};

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int k = omp_get_thread_num(), n_threads = omp_get_num_threads();
    int64_t j0, j1;
    thread_units(H, k, n_threads, j0, j1);
    const int64_t w = j1 - j0;
    for (int64_t b = 0; b < B; ++b) {
      copy_units(hb[1] + b * H, h0 + b * H, j0, j1);
      copy_units(c + b * H, c0 + b * H, j0, j1);
    }
    Buffer pack_mem, a_mem, a_packed_mem, g_mem, scratch;
    GemmPacked pk[4], a_packed;
    GemmParams gp;
    T* a = nullptr;
    T* g = nullptr;
    const int64_t pb = align64(gemm_packed_bytes(p.dtype, GemmSide::b, w, K));
    if (w > 0 && T_ > 0 && B > 0) {
      pack_mem.reset(4 * pb);
      for (int q = 0; q < 4; ++q)
        pk[q] = pack_b(p.dtype, wcat + (q * H + j0) * K, 1, K, K, w, pack_mem.data() + q * pb);
      a_mem.reset(B * K * sizeof(T));
      a = reinterpret_cast<T*>(a_mem.data());
      a_packed_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::a, B, K));
      g_mem.reset(B * 4 * w * sizeof(T));
      g = reinterpret_cast<T*>(g_mem.data());
      gp.dtype = p.dtype;
      gp.M = B;
      gp.N = w;
      gp.K = K;
      gp.a = packed(&a_packed);  // packed every step (sizing needs only the kind)
      gp.b = packed(&pk[0]);
      gp.c = g;
      gp.rs_c = 4 * w;
      gp.beta = 0.0;
      if (bias) gp.epilogue.bias_kind = GemmBias::per_col;
      scratch.reset(gemm_scratch_bytes(gp) + 64);
    }
#pragma omp barrier

    for (int64_t s = 0; s < T_; ++s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const T* h_prev = hb[(s + 1) & 1];
      T* h_next = hb[s & 1];
      const int64_t rows = active_rows(p.lengths, B, s);
      if (w > 0) {
        if (rows > 0) {
          for (int64_t b = 0; b < rows; ++b) {
            copy_units(a + b * K, x + (t * B + b) * I, 0, I);
            copy_units(a + b * K + I, h_prev + b * H, 0, H);
          }
          gp.M = rows;
          a_packed = pack_a(p.dtype, a, rows, K, a_packed_mem.data());
          for (int q = 0; q < 4; ++q) {
            gp.b = packed(&pk[q]);
            gp.c = g + q * w;
            if (bias) gp.epilogue.bias = bias + q * H + j0;
            gemm_single_thread(gp, scratch.data(), scratch.bytes());
          }
        }
        for (int64_t b = 0; b < rows; ++b)  // the block's gates of unit j0 + u sit at q * w + u
          cell_forward_row(g + b * 4 * w, c + b * H + j0, c + b * H + j0, output + (t * B + b) * H + j0,
                           h_next + b * H + j0, w, 0, w);
        for (int64_t b = rows; b < B; ++b) {  // past this row's length: carry the state
          copy_units(h_next + b * H, h_prev + b * H, j0, j1);
          copy_units<T>(output + (t * B + b) * H, nullptr, j0, j1);
        }
      }
#pragma omp barrier
    }
    const T* h_last = hb[(T_ + 1) & 1];
    for (int64_t b = 0; b < B; ++b) {
      copy_units(h_n + b * H, h_last + b * H, j0, j1);
      copy_units(c_n + b * H, c + b * H, j0, j1);
    }
  }
}

template <typename T>
void forward_inference(const LstmParams& p, const Split& split) {
  const int64_t I = p.I, H = p.H, G4 = 4 * H, K = I + H;
  Buffer cat_mem(G4 * K * sizeof(T)), bias_mem;
  T* wcat = reinterpret_cast<T*>(cat_mem.data());
  const T* w_ih = static_cast<const T*>(p.w_ih);
  const T* w_hh = static_cast<const T*>(p.w_hh);
  for (int64_t r = 0; r < G4; ++r) {
    for (int64_t k = 0; k < I; ++k) wcat[r * K + k] = w_ih[r * I + k];
    for (int64_t k = 0; k < H; ++k) wcat[r * K + I + k] = w_hh[r * H + k];
  }
  T* bias = combined_bias<T>(p, bias_mem);
  // By rows: the transposed form when a thread's rows fill whole NR-wide tiles better than
  // they fill MR-high ones (e.g. 32 rows: one 32-wide tile vs 14 + 14 + 4).
  const GemmBlocking bl = gemm_blocking(p.dtype);
  const int64_t rows = (p.B + split.threads - 1) / split.threads;
  const bool transposed = rows >= bl.NR && round_up64(rows, bl.NR) < round_up64(rows, bl.MR);
  if (split.by_rows && transposed)
    inference_by_rows_t<T>(p, split.threads, wcat, bias);
  else if (split.by_rows)
    inference_by_rows<T>(p, split.threads, wcat, bias);
  else
    inference_by_units<T>(p, split.threads, wcat, bias);
}

template <typename T>
void forward_saving(const LstmParams& p);

template <typename T>
void forward_impl(const LstmParams& p) {
  if (p.gates == nullptr) {  // inference (lstm.cpp checked that cells is null too)
    forward_inference<T>(p, recurrence_split(p));
    return;
  }
  forward_saving<T>(p);
}

template <typename T>
void forward_saving(const LstmParams& p) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  T* gates = static_cast<T*>(p.gates);
  T* cells = static_cast<T*>(p.cells);
  T* output = static_cast<T*>(p.output);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);

  // 1. Input projection of every step, both biases folded into one per-column bias.
  {
    Buffer bias;
    GemmParams gp;
    gp.dtype = p.dtype;
    gp.M = T_ * B;
    gp.N = G4;
    gp.K = I;
    gp.a = strided(p.input, I, 1);
    gp.b = strided(p.w_ih, 1, I);
    gp.c = gates;
    gp.rs_c = G4;
    gp.cs_c = 1;
    if (const T* b = combined_bias<T>(p, bias)) {
      gp.epilogue.bias_kind = GemmBias::per_col;
      gp.epilogue.bias = b;
    }
    gp.num_threads = p.num_threads;
    if (gp.M > 0) gemm(gp);
  }

  // h_{t-1} for the recurrent GEMM: two (B, H) buffers, so that rows past their length can
  // carry their state while output[t] gets zeros.
  Buffer hbuf(2 * B * H * sizeof(T));
  T* const hb[2] = {reinterpret_cast<T*>(hbuf.data()), reinterpret_cast<T*>(hbuf.data()) + B * H};
  const Split split = recurrence_split(p);
  if (split.by_rows) {
    forward_by_rows<T>(p, hb, split.threads);
    return;
  }
  const int nt = split.threads;  // by hidden units

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int k = omp_get_thread_num(), n_threads = omp_get_num_threads();
    int64_t j0, j1;
    thread_units(H, k, n_threads, j0, j1);
    const int64_t w = j1 - j0;

    // The four W_hh^T slices (K = H, N = w) this thread multiplies by, packed once; h_{t-1}
    // packed once per step (the A operand of all four products); GEMM scratch.
    Buffer pack_mem, h_packed_mem, scratch;
    GemmPacked pk[4], h_packed;
    GemmParams gp;
    if (w > 0 && T_ > 0 && B > 0) {
      const int64_t pb = align64(gemm_packed_bytes(p.dtype, GemmSide::b, w, H));
      pack_mem.reset(4 * pb);
      for (int q = 0; q < 4; ++q)
        pk[q] = pack_b(p.dtype, static_cast<const T*>(p.w_hh) + (q * H + j0) * H, 1, H, H, w, pack_mem.data() + q * pb);
      gp.dtype = p.dtype;
      gp.M = B;
      gp.N = w;
      gp.K = H;
      h_packed_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::a, B, H));
      h_packed = pack_a(p.dtype, h0, B, H, h_packed_mem.data());
      gp.a = packed(&h_packed);
      gp.b = packed(&pk[0]);
      gp.c = gates + j0;
      gp.rs_c = G4;
      gp.cs_c = 1;
      gp.beta = 1.0;
      scratch.reset(gemm_scratch_bytes(gp) + 64);
    }

    for (int64_t s = 0; s < T_; ++s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t t_prev = p.reverse ? t + 1 : t - 1;
      const T* h_prev = s == 0 ? h0 : hb[(s - 1) & 1];
      T* h_next = hb[s & 1];
      const T* c_prev_all = s == 0 ? c0 : cells + t_prev * B * H;
      T* g_t = gates + t * B * G4;
      const int64_t rows = active_rows(p.lengths, B, s);
      if (w > 0) {
        if (rows > 0 && H > 0) {
          gp.M = rows;
          h_packed = pack_a(p.dtype, h_prev, rows, H, h_packed_mem.data());
          for (int q = 0; q < 4; ++q) {
            gp.b = packed(&pk[q]);
            gp.c = g_t + q * H + j0;
            gemm_single_thread(gp, scratch.data(), scratch.bytes());
          }
        }
        for (int64_t b = 0; b < rows; ++b)
          cell_forward_row(g_t + b * G4, c_prev_all + b * H, cells + (t * B + b) * H, output + (t * B + b) * H,
                           h_next + b * H, H, j0, j1);
        for (int64_t b = rows; b < B; ++b) {  // past this row's length: carry the state
          copy_units(cells + (t * B + b) * H, c_prev_all + b * H, j0, j1);
          copy_units(h_next + b * H, h_prev + b * H, j0, j1);
          copy_units<T>(output + (t * B + b) * H, nullptr, j0, j1);
        }
      }
#pragma omp barrier
    }

    const T* h_last = T_ == 0 ? h0 : hb[(T_ - 1) & 1];
    const T* c_last = T_ == 0 ? c0 : cells + (p.reverse ? 0 : T_ - 1) * B * H;
    for (int64_t b = 0; b < B; ++b) {
      copy_units(static_cast<T*>(p.h_n) + b * H, h_last + b * H, j0, j1);
      copy_units(static_cast<T*>(p.c_n) + b * H, c_last + b * H, j0, j1);
    }
  }
}

// ---- backward ----------------------------------------------------------------------------------

// BPTT split by batch rows: thread k runs rows [b0, b1) back through every step, alone, and
// accumulates its own partial bias gradient in db_parts[k * 4H ..] (summed by the caller).
//   dh_rec, dc (B, H): dL/dh and dL/dc flowing back, initialised here from grad_h_n / grad_c_n
template <typename T>
void backward_by_rows(const LstmParams& p, T* dh_rec, T* dc, T* db_parts, int nt) {
  const int64_t T_ = p.T, B = p.B, H = p.H, G4 = 4 * H;
  const T* gates = static_cast<const T*>(p.gates);
  const T* cells = static_cast<const T*>(p.cells);
  const T* c0 = static_cast<const T*>(p.c0);
  const T* grad_output = static_cast<const T*>(p.grad_output);
  const T* grad_h_n = static_cast<const T*>(p.grad_h_n);
  const T* grad_c_n = static_cast<const T*>(p.grad_c_n);
  T* dG = static_cast<T*>(p.grad_gates);
  const bool work = T_ > 0 && B > 0;

  // W_hh (K = 4H, N = H), packed once and read by every thread.
  Buffer w_mem;
  GemmPacked w_packed;
  if (work) {
    w_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::b, H, G4));
    w_packed = pack_b(p.dtype, p.w_hh, H, 1, G4, H, w_mem.data(), p.num_threads);
  }

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int k = omp_get_thread_num();
    int64_t b0, b1;
    thread_rows(B, k, omp_get_num_threads(), b0, b1);
    T* db = db_parts + k * G4;
    Buffer scratch;
    GemmParams gp;
    if (work && b1 > b0) {
      gp.dtype = p.dtype;
      gp.M = b1 - b0;
      gp.N = H;
      gp.K = G4;
      gp.a = strided(dG + b0 * G4, G4, 1);
      gp.b = packed(&w_packed);
      gp.c = dh_rec + b0 * H;
      gp.rs_c = H;
      gp.cs_c = 1;
      scratch.reset(gemm_scratch_bytes(gp) + 64);
    }
    for (int64_t b = b0; b < b1; ++b) {
      copy_units(dh_rec + b * H, grad_h_n ? grad_h_n + b * H : nullptr, 0, H);
      copy_units(dc + b * H, grad_c_n ? grad_c_n + b * H : nullptr, 0, H);
    }
    for (int64_t s = T_ - 1; s >= 0 && b1 > b0; --s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t t_prev = p.reverse ? t + 1 : t - 1;
      const T* c_prev = s == 0 ? c0 : cells + t_prev * B * H;
      const int64_t b_live = live_end(p.lengths, B, s, b0, b1);
      T* dg_t = dG + t * B * G4;
      for (int64_t b = b0; b < b_live; ++b) {
        const int64_t r = t * B + b;
        cell_backward_row(gates + r * G4, cells + r * H, c_prev + b * H, grad_output ? grad_output + r * H : nullptr,
                          dh_rec + b * H, dc + b * H, dg_t + b * G4, db, H, 0, H);
      }
      for (int64_t b = b_live; b < b1; ++b) copy_units<T>(dg_t + b * G4, nullptr, 0, G4);
      if (b_live > b0) {  // dh_rec[b0:b_live] = dG_t[b0:b_live] W_hh
        gp.M = b_live - b0;
        gp.a = strided(dg_t + b0 * G4, G4, 1);
        gemm_single_thread(gp, scratch.data(), scratch.bytes());
      }
    }
    for (int64_t b = b0; b < b1; ++b) {
      copy_units(static_cast<T*>(p.grad_h0) + b * H, dh_rec + b * H, 0, H);
      copy_units(static_cast<T*>(p.grad_c0) + b * H, dc + b * H, 0, H);
    }
  }
}

// BPTT split by hidden units (small batches): see the file comment.
template <typename T>
void backward_by_units(const LstmParams& p, T* dh_rec, T* dc, int nt) {
  const int64_t T_ = p.T, B = p.B, H = p.H, G4 = 4 * H;
  const T* gates = static_cast<const T*>(p.gates);
  const T* cells = static_cast<const T*>(p.cells);
  const T* c0 = static_cast<const T*>(p.c0);
  const T* grad_output = static_cast<const T*>(p.grad_output);
  T* dG = static_cast<T*>(p.grad_gates);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int k = omp_get_thread_num(), n_threads = omp_get_num_threads();
    int64_t j0, j1;
    thread_units(H, k, n_threads, j0, j1);
    const int64_t w = j1 - j0;

    Buffer pack_mem, scratch, bias_acc;
    GemmPacked pk;
    GemmParams gp;
    T* db = nullptr;
    if (w > 0 && T_ > 0 && B > 0) {
      // W_hh[:, j0:j1] as the K = 4H x N = w operand of dh_rec = dG_t W_hh.
      pack_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::b, w, G4));
      pk = pack_b(p.dtype, static_cast<const T*>(p.w_hh) + j0, H, 1, G4, w, pack_mem.data());
      gp.dtype = p.dtype;
      gp.M = B;
      gp.N = w;
      gp.K = G4;
      gp.a = strided(dG, G4, 1);
      gp.b = packed(&pk);
      gp.c = dh_rec + j0;
      gp.rs_c = H;
      gp.cs_c = 1;
      scratch.reset(gemm_scratch_bytes(gp) + 64);
      bias_acc.reset(4 * w * sizeof(T));
      db = reinterpret_cast<T*>(bias_acc.data());
      for (int64_t r = 0; r < 4 * w; ++r) db[r] = T(0);
    }
    for (int64_t b = 0; b < B; ++b) {
      copy_units(dh_rec + b * H, static_cast<const T*>(p.grad_h_n) ? static_cast<const T*>(p.grad_h_n) + b * H : nullptr,
                 j0, j1);
      copy_units(dc + b * H, static_cast<const T*>(p.grad_c_n) ? static_cast<const T*>(p.grad_c_n) + b * H : nullptr,
                 j0, j1);
    }

    for (int64_t s = T_ - 1; s >= 0; --s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t t_prev = p.reverse ? t + 1 : t - 1;
      const T* c_prev_all = s == 0 ? c0 : cells + t_prev * B * H;
      const int64_t rows = active_rows(p.lengths, B, s);
      T* dg_t = dG + t * B * G4;
      if (w > 0) {
        for (int64_t b = 0; b < rows; ++b) {
          const int64_t r = t * B + b;
          cell_backward_row(gates + r * G4, cells + r * H, c_prev_all + b * H,
                            grad_output ? grad_output + r * H : nullptr, dh_rec + b * H, dc + b * H, dg_t + b * G4,
                            db, H, j0, j1);
        }
        for (int64_t b = rows; b < B; ++b)  // past this row's length: no gate gradient
          for (int q = 0; q < 4; ++q) copy_units<T>(dg_t + b * G4 + q * H, nullptr, j0, j1);
      }
#pragma omp barrier
      if (w > 0 && rows > 0) {
        gp.M = rows;
        gp.a = strided(dg_t, G4, 1);
        gp.c = dh_rec + j0;
        gemm_single_thread(gp, scratch.data(), scratch.bytes());
      }
    }

    for (int64_t b = 0; b < B; ++b) {
      copy_units(static_cast<T*>(p.grad_h0) + b * H, dh_rec + b * H, j0, j1);
      copy_units(static_cast<T*>(p.grad_c0) + b * H, dc + b * H, j0, j1);
    }
    T* gb = static_cast<T*>(p.grad_bias);
    for (int q = 0; q < 4; ++q)
      for (int64_t j = j0; j < j1; ++j) gb[q * H + j] = db ? db[q * w + (j - j0)] : T(0);
  }

}

// Weight and input gradients from dG (T, B, 4H): one GEMM each over all T steps.
template <typename T>
void weight_gradients(const LstmParams& p) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  const T* dG = static_cast<const T*>(p.grad_gates);
  {
    GemmParams gp;  // dW_ih (4H, I) = dG^T (4H, T*B) X (T*B, I)
    gp.dtype = p.dtype;
    gp.M = G4;
    gp.N = I;
    gp.K = T_ * B;
    gp.a = strided(dG, 1, G4);
    gp.b = strided(p.input, I, 1);
    gp.c = p.grad_w_ih;
    gp.rs_c = I;
    gp.num_threads = p.num_threads;
    if (I > 0) gemm(gp);
  }
  {
    // dW_hh (4H, H) = sum_t dG_t^T (4H, B) h_{t-1} (B, H): a batch-reduce GEMM whose item t is
    // the state before step t (h0 for the first step visited, else output at the previous time).
    Buffer items_mem(T_ * sizeof(void*) + 8);
    const void** items = reinterpret_cast<const void**>(items_mem.data());
    const T* output = static_cast<const T*>(p.output);
    for (int64_t t = 0; t < T_; ++t) {
      const bool first = p.reverse ? t == T_ - 1 : t == 0;
      items[t] = first ? p.h0 : static_cast<const void*>(output + (p.reverse ? t + 1 : t - 1) * B * H);
    }
    GemmParams gp;
    gp.dtype = p.dtype;
    gp.M = G4;
    gp.N = H;
    gp.K = B;
    gp.batch_count = T_;
    gp.a = strided(dG, 1, G4);
    gp.b.kind = GemmOperandKind::batch;
    gp.b.items = items;
    gp.b.rs = H;
    gp.b.cs = 1;
    gp.c = p.grad_w_hh;
    gp.rs_c = H;
    gp.num_threads = p.num_threads;
    gemm(gp);
  }
  if (T_ * B > 0 && I > 0) {
    GemmParams gp;  // dX (T*B, I) = dG (T*B, 4H) W_ih (4H, I)
    gp.dtype = p.dtype;
    gp.M = T_ * B;
    gp.N = I;
    gp.K = G4;
    gp.a = strided(dG, G4, 1);
    gp.b = strided(p.w_ih, I, 1);
    gp.c = p.grad_input;
    gp.rs_c = I;
    gp.num_threads = p.num_threads;
    gemm(gp);
  }
}

template <typename T>
void backward_impl(const LstmParams& p) {
  const int64_t B = p.B, H = p.H, G4 = 4 * H;

  // dh_rec: dL/dh_t flowing back from step t+1 (grad_h_n at first); dc likewise for c.
  Buffer state(2 * B * H * sizeof(T));
  T* dh_rec = reinterpret_cast<T*>(state.data());
  T* dc = dh_rec + B * H;
  const Split split = recurrence_split(p);
  if (split.by_rows) {
    const int64_t parts = split.threads;
    Buffer db_mem(parts * G4 * sizeof(T));
    T* db_parts = reinterpret_cast<T*>(db_mem.data());
    for (int64_t r = 0; r < parts * G4; ++r) db_parts[r] = T(0);
    backward_by_rows<T>(p, dh_rec, dc, db_parts, split.threads);
    T* gb = static_cast<T*>(p.grad_bias);
    for (int64_t r = 0; r < G4; ++r) {
      T sum = T(0);
      for (int64_t k = 0; k < parts; ++k) sum += db_parts[k * G4 + r];
      gb[r] = sum;
    }
  } else {
    backward_by_units<T>(p, dh_rec, dc, split.threads);
  }
  weight_gradients<T>(p);
}

}  // namespace

void lstm_forward(const LstmParams& p) {
  if (p.dtype == DType::f64)
    forward_impl<double>(p);
  else
    forward_impl<float>(p);
}

void lstm_backward(const LstmParams& p) {
  if (p.dtype == DType::f64)
    backward_impl<double>(p);
  else
    backward_impl<float>(p);
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
