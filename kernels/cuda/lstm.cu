// LSTM layer on CUDA, forward and backward (see kernels/include/bigmodel/lstm.h for the math).
// Framework-free: CUDA runtime only; launchers take the stream as void*.
//
// Element type T (float, double, __half, __nv_bfloat16); the gates, cells and every
// intermediate are kept in W = float (double for T = double), and every product is accumulated
// in W.
//
// Kernels (all launched on the caller's stream, in order):
//   gemm_kernel         our tiled GEMM (no cuBLAS): C (M, N) = alpha A B + beta C + bias, any
//                       strides, 64 x 64 output tile per 256-thread block, 4 x 4 per thread,
//                       K in steps of 16 through shared memory. Used for the input
//                       projection, the per-step h W_hh^T / dG W_hh, and the weight / input
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
// v1 (this file): correctness-first. The GEMM uses plain strided loads (coalesced along whichever
// dimension has unit stride) and FMA on CUDA cores; no tensor cores.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bigmodel/lstm.h"

// Per-element and per-thread bodies are __host__ __device__, so that the host emulation test
// (tests/cuda/lstm_emulation.cu) can run them on the CPU where no GPU is available.
#define LSTM_HD __host__ __device__ __forceinline__

namespace bigmodel::cuda {
namespace {

// ---- element types ---------------------------------------------------------------------------

LSTM_HD float to_w(float v) { return v; }
LSTM_HD double to_w(double v) { return v; }
LSTM_HD float to_w(__half v) { return __half2float(v); }
LSTM_HD float to_w(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
struct Cvt {
  template <typename A>
  static LSTM_HD T from(A v) { return static_cast<T>(v); }
};
template <>
struct Cvt<__half> {
  static LSTM_HD __half from(float v) { return __float2half_rn(v); }
};
template <>
struct Cvt<__nv_bfloat16> {
  static LSTM_HD __nv_bfloat16 from(float v) { return __float2bfloat16_rn(v); }
};

template <typename T>
struct Work {
  using type = float;
};
template <>
struct Work<double> {
  using type = double;
};

LSTM_HD float sigmoid_w(float x) { return 1.0f / (1.0f + expf(-x)); }
LSTM_HD double sigmoid_w(double x) { return 1.0 / (1.0 + exp(-x)); }
LSTM_HD float tanh_w(float x) { return tanhf(x); }
LSTM_HD double tanh_w(double x) { return tanh(x); }

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("lstm: ") + what + ": CUDA kernel launch failed: " + cudaGetErrorName(err) +
                             " (" + cudaGetErrorString(err) + ")");
}

constexpr int kThreads = 256;

unsigned int blocks_for(int64_t total) {
  const int64_t b = (total + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(1) << 22;  // grid-stride loops cover the rest
  return static_cast<unsigned int>(b < 1 ? 1 : (b < cap ? b : cap));
}

#define LSTM_GRID_STRIDE_LOOP(i, total)                                                       \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (total); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// ---- tiled GEMM --------------------------------------------------------------------------------

constexpr int BM = 64, BN = 64, BK = 16;  // block tile (M x N) and K step
constexpr int TM = 4, TN = 4;             // per-thread outputs: rows ty + 16 i, columns tx + 16 j

template <typename TA, typename TB, typename TC>
struct GemmArgs {
  int64_t M, N, K;
  const TA* a;  // A(m, k) = a[m * ars + k * acs]
  int64_t ars, acs;
  const TB* b;  // B(k, n) = b[k * brs + n * bcs]
  int64_t brs, bcs;
  TC* c;  // C(m, n) = c[m * crs + n]
  int64_t crs;
  const TA* bias1;  // optional, per column (length N), added after alpha A B
  const TA* bias2;
  float beta;  // 0: C is not read
};

// The block algorithm in three per-thread phases (tid = ty * 16 + tx in [0, 256)), separated by
// __syncthreads() in the kernel:
//   load:       thread tid stores 4 of the 64 x 16 A elements and 4 of the 16 x 64 B elements of
//               step k0 in shared memory; consecutive threads walk whichever dimension has unit
//               stride, so that global loads coalesce. Out-of-range elements are zeros.
//   accumulate: acc[i][j] += sum_kk As[kk][ty + 16 i] * Bs[kk][tx + 16 j]
//   store:      C(m0 + ty + 16 i, n0 + tx + 16 j) = acc + beta C + bias, where in range.
template <typename Acc>
struct GemmTiles {
  Acc As[BK][BM + 1];
  Acc Bs[BK][BN + 1];
};

template <typename TA, typename TB, typename TC, typename Acc>
LSTM_HD void gemm_load(const GemmArgs<TA, TB, TC>& g, GemmTiles<Acc>& sm, int tid, int64_t m0, int64_t n0,
                       int64_t k0) {
  for (int l = 0; l < (BM * BK) / 256; ++l) {
    const int e = tid + l * 256;
    const bool k_fast = g.acs == 1;
    const int mm = k_fast ? e / BK : e % BM, kk = k_fast ? e % BK : e / BM;
    const int64_t m = m0 + mm, k = k0 + kk;
    sm.As[kk][mm] = (m < g.M && k < g.K) ? Acc(to_w(g.a[m * g.ars + k * g.acs])) : Acc(0);
  }
  for (int l = 0; l < (BK * BN) / 256; ++l) {
    const int e = tid + l * 256;
    const bool n_fast = g.bcs == 1;
    const int nn = n_fast ? e % BN : e / BK, kk = n_fast ? e / BN : e % BK;
    const int64_t k = k0 + kk, n = n0 + nn;
    sm.Bs[kk][nn] = (k < g.K && n < g.N) ? Acc(to_w(g.b[k * g.brs + n * g.bcs])) : Acc(0);
  }
}

template <typename Acc>
LSTM_HD void gemm_accumulate(const GemmTiles<Acc>& sm, int tx, int ty, Acc (&acc)[TM][TN]) {
#pragma unroll
  for (int kk = 0; kk < BK; ++kk) {
    Acc av[TM], bv[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) av[i] = sm.As[kk][ty + 16 * i];
#pragma unroll
    for (int j = 0; j < TN; ++j) bv[j] = sm.Bs[kk][tx + 16 * j];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
  }
}

template <typename TA, typename TB, typename TC, typename Acc>
LSTM_HD void gemm_store(const GemmArgs<TA, TB, TC>& g, const Acc (&acc)[TM][TN], int tx, int ty, int64_t m0,
                        int64_t n0) {
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= g.M) continue;
    for (int j = 0; j < TN; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n >= g.N) continue;
      Acc v = acc[i][j];
      TC* cp = g.c + m * g.crs + n;
      if (g.beta != 0.0f) v += Acc(g.beta) * Acc(to_w(*cp));
      if (g.bias1) v += Acc(to_w(g.bias1[n])) + Acc(to_w(g.bias2[n]));
      *cp = Cvt<TC>::from(v);
    }
  }
}

#ifndef BIGMODEL_CUDA_EMULATION
// Grid: x over M tiles (up to 2^31 - 1), y over N tiles. Block: 16 x 16 threads.
template <typename TA, typename TB, typename TC, typename Acc>
__global__ void __launch_bounds__(256) gemm_kernel(const GemmArgs<TA, TB, TC> g) {
  __shared__ GemmTiles<Acc> sm;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM, n0 = static_cast<int64_t>(blockIdx.y) * BN;
  Acc acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = Acc(0);
  for (int64_t k0 = 0; k0 < g.K; k0 += BK) {
    gemm_load(g, sm, tid, m0, n0, k0);
    __syncthreads();
    gemm_accumulate(sm, tx, ty, acc);
    __syncthreads();
  }
  gemm_store(g, acc, tx, ty, m0, n0);
}
#endif

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
  LSTM_HD void operator()(int64_t idx) const {
    const int64_t b = idx / H, j = idx - b * H;
    const W cp = c_prev_w ? c_prev_w[idx] : W(to_w(c0[idx]));
    if (b < rows) {
      W* g = g_t + b * 4 * H + j;
      const W i = sigmoid_w(g[0]), f = sigmoid_w(g[H]), gg = tanh_w(g[2 * H]), o = sigmoid_w(g[3 * H]);
      g[0] = i;
      g[H] = f;
      g[2 * H] = gg;
      g[3 * H] = o;
      const W c = f * cp + i * gg;
      const T h = Cvt<T>::from(o * tanh_w(c));
      c_t[idx] = c;
      out_t[idx] = h;
      h_next[idx] = h;
    } else {
      c_t[idx] = cp;
      out_t[idx] = Cvt<T>::from(W(0));
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
  LSTM_HD void operator()(int64_t i) const {
    h_n[i] = h_last[i];
    c_n[i] = c_last_t ? c_last_t[i] : Cvt<T>::from(c_last[i]);
  }
};

// dst (W) = src (T), or zeros when src is null.
template <typename T, typename W>
struct LoadGrad {
  W* dst;
  const T* src;
  LSTM_HD void operator()(int64_t i) const { dst[i] = src ? W(to_w(src[i])) : W(0); }
};

template <typename T, typename W>
struct StoreGrad {
  T* dst;
  const W* src;
  LSTM_HD void operator()(int64_t i) const { dst[i] = Cvt<T>::from(src[i]); }
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
  LSTM_HD void operator()(int64_t idx) const {
    const int64_t b = idx / H, j = idx - b * H;
    W* dg = dg_t + b * 4 * H + j;
    if (b >= rows) {
      dg[0] = dg[H] = dg[2 * H] = dg[3 * H] = W(0);
      return;
    }
    const W* g = g_t + b * 4 * H + j;
    const W i = g[0], f = g[H], gg = g[2 * H], o = g[3 * H];
    const W dh = dh_rec[idx] + (grad_out_t ? W(to_w(grad_out_t[idx])) : W(0));
    const W cp = c_prev_w ? c_prev_w[idx] : W(to_w(c0[idx]));
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
  LSTM_HD void operator()(int64_t n) const {
    W s = W(0);
    for (int64_t r = 0; r < rows; ++r) s += x[r * cols + n];
    out[n] = Cvt<T>::from(s);
  }
};

// ---- launchers -----------------------------------------------------------------------------
// for_each(n, f): f(i) for i in [0, n); gemm(g): the tiled GEMM. On the GPU they launch the
// kernels below; the host emulation test defines them itself (BIGMODEL_CUDA_EMULATION).

#ifndef BIGMODEL_CUDA_EMULATION
template <typename F>
__global__ void for_each_kernel(int64_t n, const F f) {
  LSTM_GRID_STRIDE_LOOP(i, n) { f(i); }
}

template <typename F>
void for_each(int64_t n, const F& f, cudaStream_t stream, const char* what) {
  if (n <= 0) return;
  for_each_kernel<F><<<blocks_for(n), kThreads, 0, stream>>>(n, f);
  check_launch(what);
}

template <typename TA, typename TB, typename TC>
void gemm(const GemmArgs<TA, TB, TC>& g, cudaStream_t stream, const char* what) {
  if (g.M <= 0 || g.N <= 0) return;
  using Acc = typename Work<TC>::type;
  const int64_t mt = (g.M + BM - 1) / BM, nt = (g.N + BN - 1) / BN;
  if (mt > 2147483647 || nt > 65535) throw std::invalid_argument(std::string("lstm: ") + what + ": GEMM too large");
  const dim3 grid(static_cast<unsigned>(mt), static_cast<unsigned>(nt)), block(16, 16);
  gemm_kernel<TA, TB, TC, Acc><<<grid, block, 0, stream>>>(g);
  check_launch(what);
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

template <typename T>
void forward_impl(const LstmParams& p, void* workspace, cudaStream_t stream) {
  using W = typename Work<T>::type;
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  const T* x = static_cast<const T*>(p.input);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);
  const T* w_ih = static_cast<const T*>(p.w_ih);
  const T* w_hh = static_cast<const T*>(p.w_hh);
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
  using W = typename Work<T>::type;
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  const T* x = static_cast<const T*>(p.input);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);
  const T* w_ih = static_cast<const T*>(p.w_ih);
  const T* w_hh = static_cast<const T*>(p.w_hh);
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

template <typename Fn>
void dispatch(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::f32: fn(float{}); return;
    case DType::f64: fn(double{}); return;
    case DType::f16: fn(__half{}); return;
    case DType::bf16: fn(__nv_bfloat16{}); return;
  }
  throw std::invalid_argument(std::string("lstm: unsupported dtype ") + dtype_name(dt));
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
  dispatch(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    forward_impl<T>(p, workspace, static_cast<cudaStream_t>(stream));
  });
}

void lstm_backward(const LstmParams& p, void* workspace, void* stream) {
  check(p);
  dispatch(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    backward_impl<T>(p, workspace, static_cast<cudaStream_t>(stream));
  });
}

}  // namespace bigmodel::cuda
