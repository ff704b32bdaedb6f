// LSTM training forward on the CPU (see kernels/include/bigmodel/lstm.h for the math): the
// forward that saves the activated gates and c_t of every step for the backward. Compiled once
// per ISA path (see kernels/cpu/simd.h); kernels/cpu/lstm/lstm.cpp validates and dispatches here.
//
//   1. gates (T*B, 4H) = X (T*B, I) W_ih^T + (b_ih + b_hh): one multi-threaded GEMM.
//   2. One OpenMP region for the recurrence (split as lstm_common.h says): per step,
//      G_t += h_{t-1} W_hh^T on a W_hh packed once (gemm_single_thread, beta = 1), then, while
//      that block is still in L2, the gate nonlinearities and the c/h update, overwriting the
//      pre-activations with the activated gates (which the backward reads).
//      - by rows: W_hh^T (K = H, N = 4H) packed once and shared, one GEMM per thread and step;
//      - by units: thread k packs the four gate slices of W_hh^T that feed its units, packs
//        h_{t-1} once per step and runs four B x w x H products.
//
// float32 uses a rational tanh (max abs error 3.5e-7, sigmoid(x) = (1 + tanh(x/2)) / 2) in
// vector registers; float64 uses <cmath> and is accurate to the last bits (gradcheck).
#include "cpu/lstm/lstm_common.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// 1. The input projection of every step, both biases folded into one per-column bias.
template <typename T>
void project_input(const LstmParams& p, T* gates) {
  const int64_t G4 = 4 * p.H;
  AlignedBuffer bias;
  GemmParams gp = gemm_params<T>(p.T * p.B, G4, p.I, strided(p.input, p.I, 1), strided(p.w_ih, 1, p.I), gates, G4,
                                 T(1), T(0));
  if (const T* b = combined_bias<T>(p, bias)) {
    gp.epilogue.bias_kind = GemmBias::per_col;
    gp.epilogue.bias = b;
  }
  gp.num_threads = p.num_threads;
  if (gp.M > 0) gemm(gp);
}

// 2. The recurrence over the saved gates (x_t W_ih^T + b in, activated gates out).
//   hb: two (B, H) state buffers, so that rows past their length can carry their state while
//   output[t] gets zeros.
template <typename T>
void recurrence(const LstmParams& p, const Split& split, T* const hb[2]) {
  const int64_t T_ = p.T, B = p.B, H = p.H, G4 = 4 * H;
  const View<T> v(p);
  const bool work = T_ > 0 && B > 0;

  // By rows: W_hh^T (K = H, N = 4H), packed once and read by every thread.
  AlignedBuffer w_mem;
  GemmPacked w_all;
  if (work && split.by_rows) w_all = pack_into(w_mem, p.dtype, GemmSide::b, G4, H, v.w_hh, H, 1, p.num_threads);

#pragma omp parallel num_threads(split.threads) if (split.threads > 1)
  {
    const Share sh = thread_share(p, split.by_rows);
    const int64_t b0 = sh.b0, b1 = sh.b1, j0 = sh.j0, j1 = sh.j1, w = j1 - j0;
    // By units: the four W_hh^T slices (K = H, N = w) this thread multiplies by, packed once,
    // and h_{t-1} packed once per step (the A operand of all four products).
    AlignedBuffer pack_mem, h_packed_mem;
    GemmPacked pk[4], h_packed;
    StepGemm<T> sg;
    if (work && b1 > b0 && w > 0) {
      if (split.by_rows) {
        sg.init(b1 - b0, G4, H, strided(v.h0 + b0 * H, H, 1), packed(&w_all), v.gates + b0 * G4, G4, T(1));
      } else {
        const int64_t pb = align64(gemm_packed_bytes(p.dtype, GemmSide::b, w, H));
        pack_mem.reset(4 * pb);
        for (int q = 0; q < 4; ++q)
          pk[q] = gemm_pack(pack_params(p.dtype, GemmSide::b, w, H, v.w_hh + (q * H + j0) * H, H, 1,
                                        pack_mem.data() + q * pb));
        h_packed_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::a, B, H));
        sg.init(B, w, H, packed(&h_packed), packed(&pk[0]), v.gates + j0, G4, T(1));
      }
    }

    for (int64_t s = 0; s < T_ && b1 > b0; ++s) {
      const Step st = step_at(p, s);
      const T* h_prev = s == 0 ? v.h0 : hb[(s - 1) & 1];
      T* h_next = hb[s & 1];
      const T* c_prev = s == 0 ? v.c0 : v.cells + st.t_prev * B * H;
      T* g_t = v.gates + st.t * B * G4;
      const int64_t b_live = live_end(p.lengths, B, s, b0, b1);  // rows [b0, b_live) run
      if (w > 0) {
        if (b_live > b0 && split.by_rows) {
          sg.gp.M = b_live - b0;
          sg.gp.a = strided(h_prev + b0 * H, H, 1);
          sg.gp.c = g_t + b0 * G4;
          sg.run();
        } else if (b_live > b0) {
          sg.gp.M = b_live;
          h_packed = gemm_pack(pack_params(p.dtype, GemmSide::a, b_live, H, h_prev, H, 1, h_packed_mem.data()));
          for (int q = 0; q < 4; ++q) {
            sg.gp.b = packed(&pk[q]);
            sg.gp.c = g_t + q * H + j0;
            sg.run();
          }
        }
        for (int64_t b = b0; b < b_live; ++b)
          cell_forward_row(g_t + b * G4, c_prev + b * H, v.cells + (st.t * B + b) * H, v.out + (st.t * B + b) * H,
                           h_next + b * H, H, j0, j1);
        for (int64_t b = b_live; b < b1; ++b) {  // past this row's length: carry the state
          copy_units(v.cells + (st.t * B + b) * H, c_prev + b * H, j0, j1);
          copy_units(h_next + b * H, h_prev + b * H, j0, j1);
          copy_units<T>(v.out + (st.t * B + b) * H, nullptr, j0, j1);
        }
      }
      if (!split.by_rows) {
#pragma omp barrier
      }
    }
    const T* h_last = T_ == 0 ? v.h0 : hb[(T_ - 1) & 1];
    const T* c_last = T_ == 0 ? v.c0 : v.cells + (p.reverse ? 0 : T_ - 1) * B * H;
    for (int64_t b = b0; b < b1; ++b) {
      copy_units(v.h_n + b * H, h_last + b * H, j0, j1);
      copy_units(v.c_n + b * H, c_last + b * H, j0, j1);
    }
  }
}

template <typename T>
void forward_saving(const LstmParams& p) {
  project_input<T>(p, static_cast<T*>(p.gates));
  AlignedBuffer hbuf = AlignedBuffer::of<T>(2 * p.B * p.H);
  T* const hb[2] = {hbuf.as<T>(), hbuf.as<T>() + p.B * p.H};
  const Split split = recurrence_split(p);
  recurrence<T>(p, split, hb);
}

}  // namespace

void lstm_forward(const LstmParams& p) {
  BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { forward_saving<T>(p); });
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
