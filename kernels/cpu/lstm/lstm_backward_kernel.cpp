// LSTM backward (BPTT) on the CPU, from the gates and cells the training forward saved (see
// kernels/include/bigmodel/lstm.h for the math). Compiled once per ISA path (see
// kernels/cpu/simd.h); kernels/cpu/lstm/lstm.cpp validates and dispatches here.
//
//   1. One OpenMP region back through the steps (split as lstm_common.h says). Per step, the
//      pointwise part: dG_t from dh = grad_output[t] + dh_rec and the saved gates / cells, dc
//      carried in place, db accumulated (per thread) while dG_t is hot; then dh_rec = dG_t W_hh
//      on a pre-packed W_hh (K = 4H). By rows: no barrier; by units: one barrier per step (the
//      GEMM for the thread's units reads all of dG_t).
//   2. Three multi-threaded GEMMs over all T steps at once:
//      dW_ih = dG^T X,  dW_hh = sum_t dG_t^T h_{t-1} (batch-reduce over t),  dX = dG W_ih.
#include "cpu/lstm/lstm_common.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// 1. dG (T, B, 4H) into p.grad_gates, grad_h0 / grad_c0, and the bias gradient.
//   dh_rec, dc (B, H): dL/dh and dL/dc flowing back, initialised here from grad_h_n / grad_c_n.
//   db_parts: by rows, thread k's partial bias gradient (4H) at k * 4H, zeroed by the caller and
//   summed in thread order afterwards; by units, each thread sums its own units in full.
template <typename T>
void recurrence(const LstmParams& p, const Split& split, T* dh_rec, T* dc, T* db_parts) {
  const int64_t T_ = p.T, B = p.B, H = p.H, G4 = 4 * H;
  const View<T> v(p);
  T* dG = v.grad_gates;
  const bool work = T_ > 0 && B > 0;

  // By rows: W_hh (K = 4H, N = H), packed once and read by every thread.
  AlignedBuffer w_mem;
  GemmPacked w_all;
  if (work && split.by_rows) w_all = pack_into(w_mem, p.dtype, GemmSide::b, H, G4, v.w_hh, 1, H, p.num_threads);

#pragma omp parallel num_threads(split.threads) if (split.threads > 1)
  {
    const Share sh = thread_share(p, split.by_rows);
    const int64_t b0 = sh.b0, b1 = sh.b1, j0 = sh.j0, j1 = sh.j1, w = j1 - j0;
    // By units: W_hh[:, j0:j1] as the K = 4H x N = w operand of dh_rec = dG_t W_hh, and the
    // thread's bias gradient (4w, indexed from j0 per gate).
    AlignedBuffer pack_mem, bias_acc;
    GemmPacked pk;
    StepGemm<T> sg;
    T* db = split.by_rows ? db_parts + sh.k * G4 : nullptr;
    if (work && b1 > b0 && w > 0) {
      if (split.by_rows) {
        sg.init(b1 - b0, H, G4, strided(dG + b0 * G4, G4, 1), packed(&w_all), dh_rec + b0 * H, H, T(0));
      } else {
        pk = pack_into(pack_mem, p.dtype, GemmSide::b, w, G4, v.w_hh + j0, 1, H);
        sg.init(B, w, G4, strided(dG, G4, 1), packed(&pk), dh_rec + j0, H, T(0));
        bias_acc = AlignedBuffer::of<T>(4 * w);
        db = bias_acc.as<T>();
        for (int64_t r = 0; r < 4 * w; ++r) db[r] = T(0);
      }
    }
    for (int64_t b = b0; b < b1; ++b) {
      copy_units(dh_rec + b * H, v.grad_h_n ? v.grad_h_n + b * H : nullptr, j0, j1);
      copy_units(dc + b * H, v.grad_c_n ? v.grad_c_n + b * H : nullptr, j0, j1);
    }

    for (int64_t s = T_ - 1; s >= 0 && b1 > b0; --s) {
      const Step st = step_at(p, s);
      const T* c_prev = s == 0 ? v.c0 : v.cells + st.t_prev * B * H;
      const int64_t b_live = live_end(p.lengths, B, s, b0, b1);
      T* dg_t = dG + st.t * B * G4;
      if (w > 0) {
        for (int64_t b = b0; b < b_live; ++b) {
          const int64_t r = st.t * B + b;
          cell_backward_row(v.gates + r * G4, v.cells + r * H, c_prev + b * H, v.grad_out ? v.grad_out + r * H : nullptr,
                            dh_rec + b * H, dc + b * H, dg_t + b * G4, db, H, j0, j1);
        }
        for (int64_t b = b_live; b < b1; ++b)  // past this row's length: no gate gradient
          for (int q = 0; q < 4; ++q) copy_units<T>(dg_t + b * G4 + q * H, nullptr, j0, j1);
      }
      if (!split.by_rows) {
#pragma omp barrier
      }
      if (w > 0 && b_live > b0) {  // dh_rec[b0:b_live, j0:j1] = dG_t[b0:b_live] W_hh[:, j0:j1]
        sg.gp.M = b_live - b0;
        sg.gp.a = strided(dg_t + b0 * G4, G4, 1);
        sg.run();
      }
    }
    for (int64_t b = b0; b < b1; ++b) {
      copy_units(v.grad_h0 + b * H, dh_rec + b * H, j0, j1);
      copy_units(v.grad_c0 + b * H, dc + b * H, j0, j1);
    }
    if (!split.by_rows)
      for (int q = 0; q < 4; ++q)
        for (int64_t j = j0; j < j1; ++j) v.grad_bias[q * H + j] = db ? db[q * w + (j - j0)] : T(0);
  }
}

// 2. Weight and input gradients from dG (T, B, 4H): one GEMM each over all T steps.
template <typename T>
void weight_gradients(const LstmParams& p) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  const View<T> v(p);
  const T* dG = v.grad_gates;
  // dW_ih (4H, I) = dG^T (4H, T*B) X (T*B, I)
  GemmParams gp = gemm_params<T>(G4, I, T_ * B, strided(dG, 1, G4), strided(p.input, I, 1),
                                 static_cast<T*>(p.grad_w_ih), I, T(1), T(0));
  gp.num_threads = p.num_threads;
  if (I > 0) gemm(gp);

  // dW_hh (4H, H) = sum_t dG_t^T (4H, B) h_{t-1} (B, H): a batch-reduce GEMM whose item t is the
  // state before step t (h0 for the first step visited, else output at the previous time).
  AlignedBuffer items_mem(T_ * sizeof(void*) + 8);
  const void** items = reinterpret_cast<const void**>(items_mem.data());
  for (int64_t t = 0; t < T_; ++t) {
    const bool first = p.reverse ? t == T_ - 1 : t == 0;
    items[t] = first ? p.h0 : static_cast<const void*>(v.out + (p.reverse ? t + 1 : t - 1) * B * H);
  }
  gp = gemm_params<T>(G4, H, B, strided(dG, 1, G4), batched(items, H, 1), static_cast<T*>(p.grad_w_hh), H, T(1),
                      T(0));
  gp.batch_count = T_;
  gp.num_threads = p.num_threads;
  gemm(gp);

  if (T_ * B > 0 && I > 0) {  // dX (T*B, I) = dG (T*B, 4H) W_ih (4H, I)
    gp = gemm_params<T>(T_ * B, I, G4, strided(dG, G4, 1), strided(p.w_ih, I, 1), static_cast<T*>(p.grad_input), I,
                        T(1), T(0));
    gp.num_threads = p.num_threads;
    gemm(gp);
  }
}

template <typename T>
void backward(const LstmParams& p) {
  const int64_t B = p.B, H = p.H, G4 = 4 * H;
  // dh_rec: dL/dh_t flowing back from step t+1 (grad_h_n at first); dc likewise for c.
  AlignedBuffer state = AlignedBuffer::of<T>(2 * B * H);
  const Split split = recurrence_split(p);
  const int parts = split.by_rows ? split.threads : 0;
  AlignedBuffer db_mem = AlignedBuffer::of<T>(parts * G4);
  T* db_parts = db_mem.as<T>();
  for (int64_t r = 0; r < parts * G4; ++r) db_parts[r] = T(0);
  recurrence<T>(p, split, state.as<T>(), state.as<T>() + B * H, db_parts);
  if (split.by_rows) reduce_parts(static_cast<T*>(p.grad_bias), db_parts, parts, G4, G4);
  weight_gradients<T>(p);
}

}  // namespace

void lstm_backward(const LstmParams& p) {
  BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward<T>(p); });
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
