// Pieces shared by the per-ISA LSTM kernels (lstm_forward_kernel.cpp: the training forward,
// lstm_inference_kernel.cpp, lstm_backward_kernel.cpp): the work split between threads, the
// typed view of LstmParams, step bookkeeping for packed sequences, and packing. Only for
// *_kernel.cpp files (everything is inside the per-ISA anonymous namespace; see simd.h).
//
// Every recurrence (training forward, inference, backward) is one OpenMP region over the T
// steps, split one of two ways (recurrence_split):
//   - by batch rows: batch rows never interact, so each thread runs its rows through all T
//     steps with no barrier at all, on a weight packed once and shared read-only, one GEMM per
//     thread and step;
//   - by hidden units (small batches on several threads): thread k owns units [j0, j1), packs
//     the slices of the weight that feed them, and waits at one barrier per step, since the next
//     step reads all of h_t (forward) or dG_t (backward).
// Either way every output element is reduced by one thread in one fixed order, so the results
// are bitwise identical at any thread count (README, "Determinism").
#pragma once

#include <omp.h>

#include <cstdint>

#include "bigmodel/gemm.h"
#include "bigmodel/lstm.h"
#include "cpu/lstm/lstm_pointwise.h"
#include "cpu/simd.h"
#include "cpu/util.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// ---- work split --------------------------------------------------------------------------------

constexpr int64_t kUnitStep = 16;       // hidden units are split between threads in multiples of this
constexpr int64_t kRowsPerThread = 16;  // split by batch rows when every thread gets at least this many

struct Split {
  int threads;
  bool by_rows;
};

// Below ~256 kFLOP per step one thread does it all (a step must be worth a barrier, ~1-2 us).
// Otherwise split by rows when the batch is large enough (no barriers, one GEMM per step),
// else by hidden units (each thread needs at least one kUnitStep of units).
inline Split recurrence_split(const LstmParams& p) {
  int64_t nt = p.num_threads < 1 ? 1 : p.num_threads;
  if (2 * p.B * 4 * p.H * p.H < (int64_t(1) << 18)) nt = 1;
  if (nt == 1 || p.B >= kRowsPerThread * nt) return {static_cast<int>(nt), true};
  nt = min64(nt, ceil_div(p.H, kUnitStep));
  return {static_cast<int>(nt), false};
}

// Units [j0, j1) of thread `k` of `nt`: whole kUnitStep chunks.
inline void thread_units(int64_t H, int k, int nt, int64_t& j0, int64_t& j1) {
  const int64_t chunks = ceil_div(H, kUnitStep);
  j0 = min64(H, chunks * k / nt * kUnitStep);
  j1 = min64(H, chunks * (k + 1) / nt * kUnitStep);
}

// The calling thread's share of the region: rows [b0, b1) or units [j0, j1) (the other range
// is everything), and its index k.
struct Share {
  int k;
  int64_t b0, b1, j0, j1;
};

inline Share thread_share(const LstmParams& p, bool by_rows) {
  Share s{omp_get_thread_num(), 0, p.B, 0, p.H};
  const int nt = omp_get_num_threads();
  if (by_rows)
    split_range(p.B, s.k, nt, s.b0, s.b1);
  else
    thread_units(p.H, s.k, nt, s.j0, s.j1);
  return s;
}

// ---- the parameters, typed ---------------------------------------------------------------------

template <typename T>
struct View {
  explicit View(const LstmParams& p)
      : x(static_cast<const T*>(p.input)),
        h0(static_cast<const T*>(p.h0)),
        c0(static_cast<const T*>(p.c0)),
        w_ih(static_cast<const T*>(p.w_ih)),
        w_hh(static_cast<const T*>(p.w_hh)),
        grad_out(static_cast<const T*>(p.grad_output)),
        grad_h_n(static_cast<const T*>(p.grad_h_n)),
        grad_c_n(static_cast<const T*>(p.grad_c_n)),
        out(static_cast<T*>(p.output)),
        h_n(static_cast<T*>(p.h_n)),
        c_n(static_cast<T*>(p.c_n)),
        gates(static_cast<T*>(p.gates)),
        cells(static_cast<T*>(p.cells)),
        grad_gates(static_cast<T*>(p.grad_gates)),
        grad_h0(static_cast<T*>(p.grad_h0)),
        grad_c0(static_cast<T*>(p.grad_c0)),
        grad_bias(static_cast<T*>(p.grad_bias)) {}
  const T *x, *h0, *c0, *w_ih, *w_hh, *grad_out, *grad_h_n, *grad_c_n;
  T *out, *h_n, *c_n, *gates, *cells, *grad_gates, *grad_h0, *grad_c0, *grad_bias;
};

// ---- steps -------------------------------------------------------------------------------------

// Step s (0 .. T-1 in visiting order) runs at time t and follows time t_prev (meaningless at
// s = 0, where the state is h0 / c0).
struct Step {
  int64_t t, t_prev;
};

inline Step step_at(const LstmParams& p, int64_t s) {
  const int64_t t = p.reverse ? p.T - 1 - s : s;
  return {t, p.reverse ? t + 1 : t - 1};
}

// Number of rows with lengths[b] > s (lengths non-increasing); B without lengths.
inline int64_t active_rows(const int64_t* lengths, int64_t B, int64_t s) {
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
inline int64_t live_end(const int64_t* lengths, int64_t B, int64_t s, int64_t b0, int64_t b1) {
  const int64_t active = active_rows(lengths, B, s);
  return active < b0 ? b0 : (active > b1 ? b1 : active);
}

// ---- packing and GEMM set-up -------------------------------------------------------------------

// Packs the outer x K matrix src(o, k) = src[o * so + k * sk] as operand `side` into a buffer
// it sizes; returns the handle.
inline GemmPacked pack_into(AlignedBuffer& mem, DType dt, GemmSide side, int64_t outer, int64_t K, const void* src,
                            int64_t so, int64_t sk, int threads = 1) {
  mem.reset(gemm_packed_bytes(dt, side, outer, K));
  return gemm_pack(pack_params(dt, side, outer, K, src, so, sk, mem.data(), threads));
}

// One thread's per-step GEMM: C (M x N) = A B + beta C, with its scratch sized for M rows (the
// largest it will run; callers shrink gp.M / gp.N per step).
template <typename T>
struct StepGemm {
  GemmParams gp;
  AlignedBuffer scratch;
  void init(int64_t M, int64_t N, int64_t K, const GemmOperand& a, const GemmOperand& b, T* c, int64_t rs_c,
            T beta) {
    gp = gemm_params<T>(M, N, K, a, b, c, rs_c, T(1), beta);
    scratch.reset(gemm_scratch_bytes(gp) + 64);
  }
  void run() { gemm_single_thread(gp, scratch.data(), scratch.bytes()); }
};

// b_ih + b_hh (4H) into `mem`, or null without bias.
template <typename T>
T* combined_bias(const LstmParams& p, AlignedBuffer& mem) {
  if (!p.has_bias) return nullptr;
  const int64_t G4 = 4 * p.H;
  mem.reset(G4 * sizeof(T));
  T* b = mem.as<T>();
  const T* bi = static_cast<const T*>(p.b_ih);
  const T* bh = static_cast<const T*>(p.b_hh);
  for (int64_t r = 0; r < G4; ++r) b[r] = bi[r] + bh[r];
  return b;
}

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
