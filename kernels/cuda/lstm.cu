// LSTM layer on CUDA, forward and backward (see kernels/include/bigmodel/lstm.h for the math).
// Framework-free: CUDA runtime only; launchers take the stream as void*.
//
// Element type T (float, double, __half, __nv_bfloat16); the gates, cells and every
// intermediate are kept in W = float (double for T = double), and every product is accumulated
// in W.
//
// Kernels (all launched on the caller's stream, in order):
//   gemm_kernel         our tiled GEMM (no cuBLAS): C (M, N) = A B + beta C + bias, any
//                       strides, simt_gemm.cuh's 64 x 64 tile per 256-thread block. Used for
//                       the input projection, the per-step h W_hh^T / dG W_hh, and the weight / input
//                       gradients over all steps.
//   for_each_kernel     runs one pointwise body per element (grid-stride):
//     CellForward       fused gate pointwise: sigmoid / tanh of the four gates, c/h update,
//                       writes gates (activated), c_t, h_t (output and recurrent copy);
//     CellBackward      fused BPTT pointwise: dG_t from dh, dc and the saved gates / cells;
//     ColumnSum         db = sum over all (t, b) rows of dG; plus state / gradient copies.
//
// Per step the forward runs 2 kernels (GEMM with beta = 1 into G_t, pointwise) and the backward
// 2 (pointwise, GEMM). A persistent kernel keeping W_hh in shared memory across steps would save
// the launches and the W_hh reloads for small H; it is not written yet.
//
// v1 (this file): correctness-first. The GEMM is the SIMT tile of simt_gemm.cuh (shared with
// conv.cu) with plain strided loads (coalesced along whichever dimension has unit stride) and FMA
// on CUDA cores; no tensor cores.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bigmodel/lstm.h"
#include "cuda/common.cuh"     // Num (element / work types), launch_kernel, dispatch_float
#include "cuda/simt_gemm.cuh"  // the SIMT GEMM tile

namespace bigmodel::cuda {
namespace {

// ---- element types ---------------------------------------------------------------------------
// W = Num<T>::acc: float, or double for T = double.

BIGMODEL_HD float sigmoid_w(float x) { return 1.0f / (1.0f + expf(-x)); }
BIGMODEL_HD double sigmoid_w(double x) { return 1.0 / (1.0 + exp(-x)); }
BIGMODEL_HD float tanh_w(float x) { return tanhf(x); }
BIGMODEL_HD double tanh_w(double x) { return tanh(x); }

// ---- strided GEMM ------------------------------------------------------------------------------
// C (M, N) = A B + beta C + bias1 + bias2 with any operand strides, as an Op of simt_gemm.cuh.

template <typename TA, typename TB, typename TC>
struct GemmArgs {
  int64_t M, N, K;
  const TA* a;  // A(m, k) = a[m * ars + k * acs]
  int64_t ars, acs;
  const TB* b;  // B(k, n) = b[k * brs + n * bcs]
  int64_t brs, bcs;
  TC* c;  // C(m, n) = c[m * crs + n]
  int64_t crs;
  const TA* bias1;  // optional, per column (length N), added after A B
  const TA* bias2;
  float beta;  // 0: C is not read
};

template <typename TA, typename TB, typename TC>
struct StridedGemm {
  using Acc = typename Num<TC>::acc;
  GemmArgs<TA, TB, TC> g;
  bool a_k_fast, b_n_fast;

  explicit StridedGemm(const GemmArgs<TA, TB, TC>& args) : g(args), a_k_fast(args.acs == 1), b_n_fast(args.bcs == 1) {}
  BIGMODEL_HD Acc a(int64_t m, int64_t k) const { return Acc(Num<TA>::to_acc(g.a[m * g.ars + k * g.acs])); }
  BIGMODEL_HD Acc b(int64_t k, int64_t n) const { return Acc(Num<TB>::to_acc(g.b[k * g.brs + n * g.bcs])); }
  BIGMODEL_HD void store(int64_t m, int64_t n, Acc v) const {
    TC* cp = g.c + m * g.crs + n;
    if (g.beta != 0.0f) v += Acc(g.beta) * Acc(Num<TC>::to_acc(*cp));
    if (g.bias1) v += Acc(Num<TA>::to_acc(g.bias1[n])) + Acc(Num<TA>::to_acc(g.bias2[n]));
    *cp = Num<TC>::from_acc(v);
  }
  BIGMODEL_HD GemmBlock block(int64_t mt, int64_t nt) const { return {g.M, g.N, mt * kGemmBM, nt * kGemmBN, g.K}; }
};

// ---- pointwise bodies ------------------------------------------------------------------------
// Each is a functor whose operator()(i) handles item i of a 1-D range (launched by for_each).

// One step, item idx = b * H + j of B x H. Rows b < rows are active; the others carry their state.
//   g_t    (B, 4H) W: pre-activations in (x W_ih^T + b + h W_hh^T), activated gates out
//   c_prev (B, H): c0 (T) at the first step (c_prev_w null), else cells at the previous time (W)
//   h_prev (B, H) T: the recurrent input, for carrying
template <typename T, typename W>
struct CellForward {
  W* g_t;
  const T* c0;
  const W* c_prev_w;
  const T* h_prev;
  W* c_t;
  T* out_t;
  T* h_next;
  int64_t H, rows;
  BIGMODEL_HD void operator()(int64_t idx) const {
    const int64_t b = idx / H, j = idx - b * H;
    const W cp = c_prev_w ? c_prev_w[idx] : W(Num<T>::to_acc(c0[idx]));
    if (b < rows) {
      W* g = g_t + b * 4 * H + j;
      const W i = sigmoid_w(g[0]), f = sigmoid_w(g[H]), gg = tanh_w(g[2 * H]), o = sigmoid_w(g[3 * H]);
      g[0] = i;
      g[H] = f;
      g[2 * H] = gg;
      g[3 * H] = o;
      const W c = f * cp + i * gg;
      const T h = Num<T>::from_acc(o * tanh_w(c));
      c_t[idx] = c;
      out_t[idx] = h;
      h_next[idx] = h;
    } else {
      c_t[idx] = cp;
      out_t[idx] = Num<T>::from_acc(W(0));
      h_next[idx] = h_prev[idx];
    }
  }
};

// h_n = h_last (T); c_n = c_last (W), or c_last_t (T) when set.
template <typename T, typename W>
struct FinalState {
  T* h_n;
  T* c_n;
  const T* h_last;
  const W* c_last;
  const T* c_last_t;
  BIGMODEL_HD void operator()(int64_t i) const {
    h_n[i] = h_last[i];
    c_n[i] = c_last_t ? c_last_t[i] : Num<T>::from_acc(c_last[i]);
  }
};

// dst (W) = src (T), or zeros when src is null.
template <typename T, typename W>
struct LoadGrad {
  W* dst;
  const T* src;
  BIGMODEL_HD void operator()(int64_t i) const { dst[i] = src ? W(Num<T>::to_acc(src[i])) : W(0); }
};

template <typename T, typename W>
struct StoreGrad {
  T* dst;
  const W* src;
  BIGMODEL_HD void operator()(int64_t i) const { dst[i] = Num<T>::from_acc(src[i]); }
};

// Backward of one step, item idx = b * H + j:
//   dh = grad_out + dh_rec;  tc = tanh(c_t);  dc = dc + dh o (1 - tc^2)
//   dG = [dc g i(1-i), dc c_prev f(1-f), dc i (1-g^2), dh tc o(1-o)];  dc <- dc f
// Rows b >= rows (past their length) get dG = 0 and keep dh_rec / dc.
template <typename T, typename W>
struct CellBackward {
  const W* g_t;
  const W* c_t;
  const T* c0;
  const W* c_prev_w;
  const T* grad_out_t;  // null: zeros
  const W* dh_rec;
  W* dc;
  W* dg_t;
  int64_t H, rows;
  BIGMODEL_HD void operator()(int64_t idx) const {
    const int64_t b = idx / H, j = idx - b * H;
    W* dg = dg_t + b * 4 * H + j;
    if (b >= rows) {
      dg[0] = dg[H] = dg[2 * H] = dg[3 * H] = W(0);
      return;
    }
    const W* g = g_t + b * 4 * H + j;
    const W i = g[0], f = g[H], gg = g[2 * H], o = g[3 * H];
    const W dh = dh_rec[idx] + (grad_out_t ? W(Num<T>::to_acc(grad_out_t[idx])) : W(0));
    const W cp = c_prev_w ? c_prev_w[idx] : W(Num<T>::to_acc(c0[idx]));
    const W tc = tanh_w(c_t[idx]);
    const W dcv = dc[idx] + dh * o * (W(1) - tc * tc);
    dg[0] = dcv * gg * i * (W(1) - i);
    dg[H] = dcv * cp * f * (W(1) - f);
    dg[2 * H] = dcv * i * (W(1) - gg * gg);
    dg[3 * H] = dh * tc * o * (W(1) - o);
    dc[idx] = dcv * f;
  }
};

// out[n] = sum over rows r of x[r * cols + n]; item n is one column (coalesced across threads).
template <typename T, typename W>
struct ColumnSum {
  const W* x;
  int64_t rows, cols;
  T* out;
  BIGMODEL_HD void operator()(int64_t n) const {
    W s = W(0);
    for (int64_t r = 0; r < rows; ++r) s += x[r * cols + n];
    out[n] = Num<T>::from_acc(s);
  }
};

// ---- launchers -----------------------------------------------------------------------------
// for_each(n, f): f(i) for i in [0, n); gemm(g): the SIMT GEMM tile over C. On the GPU they
// launch the kernels below; the host emulation test defines them itself (BIGMODEL_CUDA_EMULATION).

#ifndef BIGMODEL_CUDA_EMULATION
template <typename F>
__global__ void for_each_kernel(int64_t n, const F f) {
  BIGMODEL_CUDA_GRID_STRIDE_LOOP(i, n) { f(i); }
}

// Grid: x over M tiles (up to 2^31 - 1), y over N tiles.
template <typename Op>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(const Op op) {
  gemm_block<typename Op::Acc>(op, op.block(blockIdx.x, blockIdx.y), 0);
}

template <typename F>
void for_each(int64_t n, const F& f, cudaStream_t stream, const char* what) {
  if (n <= 0) return;
  launch_kernel(what, for_each_kernel<F>, blocks_for(n), kThreads, 0, stream, n, f);
}

template <typename TA, typename TB, typename TC>
void gemm(const GemmArgs<TA, TB, TC>& g, cudaStream_t stream, const char* what) {
  if (g.M <= 0 || g.N <= 0) return;
  const int64_t mt = ceil_div(g.M, kGemmBM), nt = ceil_div(g.N, kGemmBN);
  if (mt > 2147483647 || nt > 65535) throw std::invalid_argument(std::string("lstm: ") + what + ": GEMM too large");
  const dim3 grid(static_cast<unsigned>(mt), static_cast<unsigned>(nt));
  launch_kernel(what, gemm_kernel<StridedGemm<TA, TB, TC>>, grid, kGemmThreads, 0, stream, StridedGemm<TA, TB, TC>(g));
}
#else
template <typename F>
void for_each(int64_t n, const F& f, cudaStream_t stream, const char* what);
template <typename TA, typename TB, typename TC>
void gemm(const GemmArgs<TA, TB, TC>& g, cudaStream_t stream, const char* what);
#endif

// ---- host side ---------------------------------------------------------------------------------

int64_t active_rows(const LstmParams& p, int64_t s) {
  if (!p.lengths) return p.B;
  int64_t r = 0;
  while (r < p.B && p.lengths[r] > s) ++r;
  return r;
}

// The layer's inputs, typed: x, h0, c0, w_ih, w_hh.
template <typename T>
struct Inputs {
  const T *x, *h0, *c0, *w_ih, *w_hh;
};

template <typename T>
Inputs<T> inputs(const LstmParams& p) {
  return {static_cast<const T*>(p.input), static_cast<const T*>(p.h0), static_cast<const T*>(p.c0),
          static_cast<const T*>(p.w_ih), static_cast<const T*>(p.w_hh)};
}

template <typename T>
void forward_impl(const LstmParams& p, void* workspace, cudaStream_t stream) {
  using W = typename Num<T>::acc;
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  const auto [x, h0, c0, w_ih, w_hh] = inputs<T>(p);
  W* gates = static_cast<W*>(p.gates);
  W* cells = static_cast<W*>(p.cells);
  T* out = static_cast<T*>(p.output);
  T* hb[2] = {static_cast<T*>(workspace), static_cast<T*>(workspace) + B * H};
  if (B == 0) return;

  // gates (T*B, 4H) = X W_ih^T + b_ih + b_hh
  GemmArgs<T, T, W> proj{T_ * B, G4, I, x, I, 1, w_ih, 1, I, gates, G4,
                         p.has_bias ? static_cast<const T*>(p.b_ih) : nullptr,
                         p.has_bias ? static_cast<const T*>(p.b_hh) : nullptr, 0.0f};
  gemm(proj, stream, "input projection");

  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = p.reverse ? T_ - 1 - s : s;
    const int64_t t_prev = p.reverse ? t + 1 : t - 1;
    const T* h_prev = s == 0 ? h0 : hb[(s - 1) & 1];
    const W* c_prev = s == 0 ? nullptr : cells + t_prev * B * H;
    const int64_t rows = active_rows(p, s);
    W* g_t = gates + t * B * G4;
    // G_t[0:rows] += h_prev W_hh^T
    GemmArgs<T, T, W> rec{rows, G4, H, h_prev, H, 1, w_hh, 1, H, g_t, G4, nullptr, nullptr, 1.0f};
    gemm(rec, stream, "recurrent GEMM");
    for_each(B * H, CellForward<T, W>{g_t, c0, c_prev, h_prev, cells + t * B * H, out + t * B * H, hb[s & 1], H, rows},
             stream, "cell forward");
  }
  const T* h_last = T_ == 0 ? h0 : hb[(T_ - 1) & 1];
  const W* c_last = T_ == 0 ? nullptr : cells + (p.reverse ? 0 : T_ - 1) * B * H;
  for_each(B * H,
           FinalState<T, W>{static_cast<T*>(p.h_n), static_cast<T*>(p.c_n), h_last, c_last, T_ == 0 ? c0 : nullptr},
           stream, "final state");
}

template <typename T>
void backward_impl(const LstmParams& p, void* workspace, cudaStream_t stream) {
  using W = typename Num<T>::acc;
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  const auto [x, h0, c0, w_ih, w_hh] = inputs<T>(p);
  const T* out = static_cast<const T*>(p.output);
  const W* gates = static_cast<const W*>(p.gates);
  const W* cells = static_cast<const W*>(p.cells);
  const T* grad_out = static_cast<const T*>(p.grad_output);
  W* dG = static_cast<W*>(p.grad_gates);
  W* dh_rec = static_cast<W*>(workspace);
  W* dc = dh_rec + B * H;

  for_each(B * H, LoadGrad<T, W>{dh_rec, static_cast<const T*>(p.grad_h_n)}, stream, "load grad_h_n");
  for_each(B * H, LoadGrad<T, W>{dc, static_cast<const T*>(p.grad_c_n)}, stream, "load grad_c_n");

  for (int64_t s = T_ - 1; s >= 0 && B > 0; --s) {
    const int64_t t = p.reverse ? T_ - 1 - s : s;
    const int64_t t_prev = p.reverse ? t + 1 : t - 1;
    const W* c_prev = s == 0 ? nullptr : cells + t_prev * B * H;
    const int64_t rows = active_rows(p, s);
    W* dg_t = dG + t * B * G4;
    for_each(B * H,
             CellBackward<T, W>{gates + t * B * G4, cells + t * B * H, c0, c_prev,
                                grad_out ? grad_out + t * B * H : nullptr, dh_rec, dc, dg_t, H, rows},
             stream, "cell backward");
    // dh_rec[0:rows] = dG_t[0:rows] W_hh
    GemmArgs<W, T, W> rec{rows, H, G4, dg_t, G4, 1, w_hh, H, 1, dh_rec, H, nullptr, nullptr, 0.0f};
    gemm(rec, stream, "recurrent backward GEMM");
  }
  for_each(B * H, StoreGrad<T, W>{static_cast<T*>(p.grad_h0), dh_rec}, stream, "store grad_h0");
  for_each(B * H, StoreGrad<T, W>{static_cast<T*>(p.grad_c0), dc}, stream, "store grad_c0");

  const int64_t R = T_ * B;  // rows of dG
  // db = column sums of dG (zeros when R == 0)
  for_each(G4, ColumnSum<T, W>{dG, R, G4, static_cast<T*>(p.grad_bias)}, stream, "bias gradient");
  // dW_ih (4H, I) = dG^T X
  GemmArgs<W, T, T> dwih{G4, I, R, dG, 1, G4, x, I, 1, static_cast<T*>(p.grad_w_ih), I, nullptr, nullptr, 0.0f};
  gemm(dwih, stream, "grad w_ih");
  // dW_hh (4H, H) = sum_t dG_t^T h_{t-1}: the steps whose previous state is an output row block
  // (contiguous in time), then the first step visited, whose previous state is h0.
  T* dwhh_p = static_cast<T*>(p.grad_w_hh);
  if (T_ > 1) {
    const W* dg_rest = p.reverse ? dG : dG + B * G4;   // times 0..T-2 (reverse) or 1..T-1
    const T* h_rest = p.reverse ? out + B * H : out;   // outputs 1..T-1 (reverse) or 0..T-2
    GemmArgs<W, T, T> a{G4, H, (T_ - 1) * B, dg_rest, 1, G4, h_rest, H, 1, dwhh_p, H, nullptr, nullptr, 0.0f};
    gemm(a, stream, "grad w_hh");
  }
  {
    const W* dg_first = dG + (p.reverse ? T_ - 1 : 0) * B * G4;
    GemmArgs<W, T, T> a{G4, H, T_ > 0 ? B : 0, dg_first, 1, G4, h0, H, 1, dwhh_p, H, nullptr, nullptr,
                        T_ > 1 ? 1.0f : 0.0f};
    gemm(a, stream, "grad w_hh (first step)");
  }
  // dX (T*B, I) = dG W_ih
  GemmArgs<W, T, T> dx{R, I, G4, dG, G4, 1, w_ih, I, 1, static_cast<T*>(p.grad_input), I, nullptr, nullptr, 0.0f};
  gemm(dx, stream, "grad input");
}

int64_t elem_size(DType dt) { return dt == DType::f64 ? 8 : dt == DType::f32 ? 4 : 2; }

void check(const LstmParams& p) {
  if (p.T < 0 || p.B < 0 || p.I < 0 || p.H < 1) throw std::invalid_argument("lstm: invalid sizes");
  const DType want = p.dtype == DType::f64 ? DType::f64 : DType::f32;
  if (p.work_dtype != want) throw std::invalid_argument("lstm: work_dtype must be float32 (float64 for float64)");
  if (p.lengths && p.reverse) throw std::invalid_argument("lstm: lengths cannot be combined with reverse");
}

}  // namespace

int64_t lstm_workspace_bytes(const LstmParams& p, bool backward) {
  // forward: two (B, H) recurrent state buffers of T; backward: dh_rec and dc, (B, H) each, of W.
  const int64_t n = 2 * p.B * p.H;
  return (backward ? elem_size(p.work_dtype) : elem_size(p.dtype)) * n + 256;
}

void lstm_forward(const LstmParams& p, void* workspace, void* stream) {
  check(p);
  dispatch_float(p.dtype, "lstm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_impl<T>(p, workspace, static_cast<cudaStream_t>(stream));
  });
}

void lstm_backward(const LstmParams& p, void* workspace, void* stream) {
  check(p);
  dispatch_float(p.dtype, "lstm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_impl<T>(p, workspace, static_cast<cudaStream_t>(stream));
  });
}

}  // namespace bigmodel::cuda
