// LSTM inference forward on the CPU (gates == cells == nullptr: nothing is saved for a backward;
// see kernels/include/bigmodel/lstm.h for the math). Compiled once per ISA path (see
// kernels/cpu/simd.h); kernels/cpu/lstm/lstm.cpp validates and dispatches here.
//
// Nothing of the T steps is kept, so nothing of them goes through memory. Each step is ONE GEMM
// over K = I + H,
//   G = [x_t | h_{t-1}] [W_ih | W_hh]^T + (b_ih + b_hh)          beta = 0
// on the concatenated weight packed once per call, into a gate block that stays in cache, then
// the cell update, which writes h_t straight into the next step's operand. Against the training
// path (the input projection of all T steps as one GEMM into the saved (T, B, 4H) gates, then per
// step G_t += h_{t-1} W_hh^T) this saves three passes over the gates in memory and one or two C
// merges per step; the GEMM work is the same. Every element is reduced in the same order
// whichever way the work is split, so inference is bitwise identical at any thread count;
// against the training path it differs by float32 rounding (the sums are grouped differently).
#include "cpu/lstm/lstm_common.h"
#include "cpu/transpose.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// The weight and bias every form reads.
//   wcat: [W_ih | W_hh] (4H, K) row-major; bias: 4H or null.
template <typename T>
struct Weights {
  AlignedBuffer cat_mem, bias_mem;
  const T* wcat = nullptr;
  const T* bias = nullptr;
  explicit Weights(const LstmParams& p) {
    const int64_t I = p.I, H = p.H, K = I + H;
    const View<T> v(p);
    cat_mem = AlignedBuffer::of<T>(4 * H * K);
    T* w = cat_mem.as<T>();
    for (int64_t r = 0; r < 4 * H; ++r) {
      for (int64_t k = 0; k < I; ++k) w[r * K + k] = v.w_ih[r * I + k];
      for (int64_t k = 0; k < H; ++k) w[r * K + I + k] = v.w_hh[r * H + k];
    }
    wcat = w;
    bias = combined_bias<T>(p, bias_mem);
  }
};

template <typename T>
void set_bias(GemmParams& gp, GemmBias kind, const T* bias) {
  if (!bias) return;
  gp.epilogue.bias_kind = kind;
  gp.epilogue.bias = bias;
}

// Split by batch rows: the calling thread runs rows [b0, b1) through every step, alone.
//   w: [W_ih | W_hh]^T (K x 4H) packed as the B operand, read by every thread.
template <typename T>
void by_rows(const LstmParams& p, const GemmPacked& w, const T* bias, int64_t b0, int64_t b1) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H, K = I + H, rows = b1 - b0;
  const View<T> v(p);
  // Per thread: A = [x_t | h] (rows, K), the gate block (rows, 4H), c (rows, H), GEMM scratch.
  AlignedBuffer a_mem = AlignedBuffer::of<T>(rows * K), g_mem = AlignedBuffer::of<T>(rows * G4),
                c_mem = AlignedBuffer::of<T>(rows * H);
  T* a = a_mem.as<T>();
  T* c = c_mem.as<T>();
  for (int64_t r = 0; r < rows; ++r) {
    copy_units(a + r * K + I, v.h0 + (b0 + r) * H, 0, H);
    copy_units(c + r * H, v.c0 + (b0 + r) * H, 0, H);
  }
  StepGemm<T> sg;
  if (rows > 0) sg.init(rows, G4, K, strided(a, K, 1), packed(&w), g_mem.as<T>(), G4, T(0));
  set_bias(sg.gp, GemmBias::per_col, bias);

  for (int64_t s = 0; s < T_ && rows > 0; ++s) {
    const int64_t t = step_at(p, s).t;
    const int64_t live = live_end(p.lengths, B, s, b0, b1) - b0;  // rows [0, live) run
    for (int64_t r = 0; r < live; ++r) copy_units(a + r * K, v.x + (t * B + b0 + r) * I, 0, I);
    if (live > 0) {
      sg.gp.M = live;
      sg.run();
    }
    for (int64_t r = 0; r < live; ++r)
      cell_forward_row(g_mem.as<T>() + r * G4, c + r * H, c + r * H, v.out + (t * B + b0 + r) * H, a + r * K + I, H,
                       0, H);
    for (int64_t r = live; r < rows; ++r)  // past this row's length: zeros out, the state is carried
      copy_units<T>(v.out + (t * B + b0 + r) * H, nullptr, 0, H);
  }
  for (int64_t r = 0; r < rows; ++r) {
    copy_units(v.h_n + (b0 + r) * H, a + r * K + I, 0, H);
    copy_units(v.c_n + (b0 + r) * H, c + r * H, 0, H);
  }
}

// by_rows with the product transposed, for thread row counts that fill whole NR-wide register
// tiles (32 or 64 rows on AVX-512, where M = rows would leave a partial 14-row tile):
//   G^T = [W_ih | W_hh] [x_t | h_{t-1}]^T + b        M = 4H, N = rows, K = I + H
// with the weight packed once as the A operand, and the state kept transposed (units x rows):
// the B operand's lower H rows are h^T, written by the cell update (vectors over batch rows),
// its upper I rows x_t^T, copied in each step. Every element is the same sum in the same order
// as in the untransposed form (a * b == b * a, same k blocks), so the results are bitwise equal.
//   w: [W_ih | W_hh] (4H x K) packed as the A operand, read by every thread.
template <typename T>
void by_rows_transposed(const LstmParams& p, const GemmPacked& w, const T* bias, int64_t b0, int64_t b1) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H, K = I + H;
  const View<T> v(p);
  const int64_t R = b1 - b0;  // this thread's rows: the leading dimension of its transposed blocks
  // Per thread: B = [x_t^T ; h^T] (K, R), G^T (4H, R), c^T (H, R), GEMM scratch.
  AlignedBuffer b_mem = AlignedBuffer::of<T>(K * R), g_mem = AlignedBuffer::of<T>(G4 * R),
                c_mem = AlignedBuffer::of<T>(H * R);
  T* bt = b_mem.as<T>();
  T* ht = bt + I * R;
  T* g = g_mem.as<T>();
  T* c = c_mem.as<T>();
  transpose_2d(v.h0 + b0 * H, H, ht, R, R, H);
  transpose_2d(v.c0 + b0 * H, H, c, R, R, H);
  StepGemm<T> sg;
  if (R > 0) sg.init(G4, R, K, packed(&w), strided(bt, R, 1), g, R, T(0));
  set_bias(sg.gp, GemmBias::per_row, bias);

  for (int64_t s = 0; s < T_ && R > 0; ++s) {
    const int64_t t = step_at(p, s).t;
    const int64_t live = live_end(p.lengths, B, s, b0, b1) - b0;  // rows [0, live) run
    transpose_2d(v.x + (t * B + b0) * I, I, bt, R, live, I);
    if (live > 0) {
      sg.gp.N = live;
      sg.run();
    }
    // Unit j's four gates for rows [0, live) sit at g[(q H + j) R + r]: cell_forward_row's
    // layout with a gate stride of H * R, run over the rows instead of the units.
    for (int64_t j = 0; j < H && live > 0; ++j)
      cell_forward_row(g + j * R, c + j * R, c + j * R, ht + j * R, ht + j * R, H * R, 0, live);
    T* out = v.out + (t * B + b0) * H;
    transpose_2d(ht, R, out, H, H, live);
    for (int64_t r = live; r < R; ++r)  // past this row's length: zeros out, the state is carried
      copy_units<T>(out + r * H, nullptr, 0, H);
  }
  transpose_2d(ht, R, v.h_n + b0 * H, H, H, R);
  transpose_2d(c, R, v.c_n + b0 * H, H, H, R);
}

// Split by hidden units (small batches on several threads): thread k owns units [j0, j1) and,
// per step, packs [x_t | h_{t-1}] (all rows) once as the A operand of four products with its
// slices of [W_ih | W_hh]^T (one per gate, packed once), into a (B, 4w) gate block; h_t goes to
// a shared ping-pong buffer, one barrier per step.
template <typename T>
void by_units(const LstmParams& p, int nt, const Weights<T>& wt) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, K = I + H;
  const View<T> v(p);
  // Shared: h ping-pong (h0 first) and c, each (B, H); every thread updates its own units.
  AlignedBuffer state = AlignedBuffer::of<T>(3 * B * H);
  T* c = state.as<T>();
  T* const hb[2] = {c + B * H, c + 2 * B * H};

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const Share sh = thread_share(p, false);
    const int64_t j0 = sh.j0, j1 = sh.j1, w = j1 - j0;
    for (int64_t b = 0; b < B; ++b) {
      copy_units(hb[1] + b * H, v.h0 + b * H, j0, j1);
      copy_units(c + b * H, v.c0 + b * H, j0, j1);
    }
    AlignedBuffer pack_mem, a_mem, a_packed_mem, g_mem;
    GemmPacked pk[4], a_packed;
    StepGemm<T> sg;
    T* a = nullptr;
    T* g = nullptr;
    const int64_t pb = align64(gemm_packed_bytes(p.dtype, GemmSide::b, w, K));
    if (w > 0 && T_ > 0 && B > 0) {
      pack_mem.reset(4 * pb);
      for (int q = 0; q < 4; ++q)
        pk[q] = gemm_pack(pack_params(p.dtype, GemmSide::b, w, K, wt.wcat + (q * H + j0) * K, K, 1,
                                      pack_mem.data() + q * pb));
      a_mem = AlignedBuffer::of<T>(B * K);
      a = a_mem.as<T>();
      a_packed_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::a, B, K));
      g_mem = AlignedBuffer::of<T>(B * 4 * w);
      g = g_mem.as<T>();
      // A is packed every step (sizing needs only the kind).
      sg.init(B, w, K, packed(&a_packed), packed(&pk[0]), g, 4 * w, T(0));
      if (wt.bias) sg.gp.epilogue.bias_kind = GemmBias::per_col;
    }
#pragma omp barrier

    for (int64_t s = 0; s < T_; ++s) {
      const int64_t t = step_at(p, s).t;
      const T* h_prev = hb[(s + 1) & 1];
      T* h_next = hb[s & 1];
      const int64_t rows = active_rows(p.lengths, B, s);
      if (w > 0) {
        if (rows > 0) {
          for (int64_t b = 0; b < rows; ++b) {
            copy_units(a + b * K, v.x + (t * B + b) * I, 0, I);
            copy_units(a + b * K + I, h_prev + b * H, 0, H);
          }
          sg.gp.M = rows;
          a_packed = gemm_pack(pack_params(p.dtype, GemmSide::a, rows, K, a, K, 1, a_packed_mem.data()));
          for (int q = 0; q < 4; ++q) {
            sg.gp.b = packed(&pk[q]);
            sg.gp.c = g + q * w;
            if (wt.bias) sg.gp.epilogue.bias = wt.bias + q * H + j0;
            sg.run();
          }
        }
        for (int64_t b = 0; b < rows; ++b)  // the block's gates of unit j0 + u sit at q * w + u
          cell_forward_row(g + b * 4 * w, c + b * H + j0, c + b * H + j0, v.out + (t * B + b) * H + j0,
                           h_next + b * H + j0, w, 0, w);
        for (int64_t b = rows; b < B; ++b) {  // past this row's length: carry the state
          copy_units(h_next + b * H, h_prev + b * H, j0, j1);
          copy_units<T>(v.out + (t * B + b) * H, nullptr, j0, j1);
        }
      }
#pragma omp barrier
    }
    const T* h_last = hb[(T_ + 1) & 1];
    for (int64_t b = 0; b < B; ++b) {
      copy_units(v.h_n + b * H, h_last + b * H, j0, j1);
      copy_units(v.c_n + b * H, c + b * H, j0, j1);
    }
  }
}

template <typename T>
void inference(const LstmParams& p) {
  const Weights<T> wt(p);
  const Split split = recurrence_split(p);
  if (!split.by_rows) return by_units<T>(p, split.threads, wt);
  // By rows: the transposed form when a thread's rows fill whole NR-wide tiles better than they
  // fill MR-high ones (e.g. 32 rows: one 32-wide tile vs 14 + 14 + 4).
  const GemmBlocking bl = gemm_blocking(p.dtype);
  const int64_t rows = ceil_div(p.B, split.threads);
  const bool transposed = rows >= bl.NR && round_up(rows, bl.NR) < round_up(rows, bl.MR);
  // The whole weight, packed once (as A for the transposed product, else as B).
  AlignedBuffer w_mem;
  const GemmPacked w = pack_into(w_mem, p.dtype, transposed ? GemmSide::a : GemmSide::b, 4 * p.H, p.I + p.H, wt.wcat,
                                 p.I + p.H, 1, p.num_threads);
#pragma omp parallel num_threads(split.threads) if (split.threads > 1)
  {
    const Share sh = thread_share(p, true);
    if (transposed)
      by_rows_transposed<T>(p, w, wt.bias, sh.b0, sh.b1);
    else
      by_rows<T>(p, w, wt.bias, sh.b0, sh.b1);
  }
}

}  // namespace

void lstm_inference(const LstmParams& p) {
  BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { inference<T>(p); });
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
