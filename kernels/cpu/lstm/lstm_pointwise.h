// Pointwise pieces of the CPU LSTM kernel: the gate nonlinearities and the per-row cell update,
// forward and backward. Included only by the per-ISA LSTM kernels (through lstm_common.h; compiled
// once per ISA path, see kernels/cpu/simd.h), so everything lives in that path's namespace.
#pragma once

#include "cpu/simd.h"
#include "cpu/util.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// ---- gate nonlinearities ---------------------------------------------------------------------

// tanh(x) for float lanes: x clamped to +-7.905, then an odd/even rational polynomial in x^2
// (minimax fit, the form Eigen uses). Max abs error 3.5e-7 over the real line; NaN stays NaN.
// The quotient uses Vec::recip (estimate + Newton step), which adds at most ~2 ulp.
BM_INLINE Vec<float> tanh_vec(Vec<float> x) {
  using V = Vec<float>;
  const V hi = V::broadcast(7.90531110763549805f), lo = V::broadcast(-7.90531110763549805f);
  x = V::select(V::gt(x, hi), hi, x);
  x = V::select(V::gt(lo, x), lo, x);
  const V x2 = x * x;
  V p = V::broadcast(-2.76076847742355e-16f);
  p = V::fma(p, x2, V::broadcast(2.00018790482477e-13f));
  p = V::fma(p, x2, V::broadcast(-8.60467152213735e-11f));
  p = V::fma(p, x2, V::broadcast(5.12229709037114e-08f));
  p = V::fma(p, x2, V::broadcast(1.48572235717979e-05f));
  p = V::fma(p, x2, V::broadcast(6.37261928875436e-04f));
  p = V::fma(p, x2, V::broadcast(4.89352455891786e-03f));
  p = p * x;
  V q = V::broadcast(1.19825839466702e-06f);
  q = V::fma(q, x2, V::broadcast(1.18534705686654e-04f));
  q = V::fma(q, x2, V::broadcast(2.26843463243900e-03f));
  q = V::fma(q, x2, V::broadcast(4.89352518554385e-03f));
  return p * V::recip(q);  // q >= 4.9e-3 > 0; the divider would be half the cost of a gate pass
}

// sigmoid(x) = 1/2 + tanh(x/2)/2.
BM_INLINE Vec<float> sigmoid_vec(Vec<float> x) {
  using V = Vec<float>;
  const V half = V::broadcast(0.5f);
  return V::fma(half, tanh_vec(half * x), half);
}

BM_INLINE double sigmoid_scalar(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// ---- pointwise cell update, one batch row, units [j0, j1) -------------------------------------
//   g    (4H): pre-activation gates in, activated gates (i, f, g, o) out
//   c_prev, c_out, h_out, h_copy (H): c_{t-1} in; c_t, h_t and a second copy of h_t out

BM_INLINE void cell_forward_row(float* g, const float* c_prev, float* c_out, float* h_out, float* h_copy, int64_t H,
                                int64_t j0, int64_t j1) {
  using V = Vec<float>;
  for (int64_t j = j0; j < j1; j += V::size) {
    const int n = static_cast<int>(min64(V::size, j1 - j));
    const V i = sigmoid_vec(V::load(g + j, n));
    const V f = sigmoid_vec(V::load(g + H + j, n));
    const V gg = tanh_vec(V::load(g + 2 * H + j, n));
    const V o = sigmoid_vec(V::load(g + 3 * H + j, n));
    i.store(g + j, n);
    f.store(g + H + j, n);
    gg.store(g + 2 * H + j, n);
    o.store(g + 3 * H + j, n);
    const V c = V::fma(f, V::load(c_prev + j, n), i * gg);
    const V h = o * tanh_vec(c);
    c.store(c_out + j, n);
    h.store(h_out + j, n);
    h.store(h_copy + j, n);
  }
}

BM_INLINE void cell_forward_row(double* g, const double* c_prev, double* c_out, double* h_out, double* h_copy,
                                int64_t H, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) {
    const double i = sigmoid_scalar(g[j]), f = sigmoid_scalar(g[H + j]);
    const double gg = std::tanh(g[2 * H + j]), o = sigmoid_scalar(g[3 * H + j]);
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = gg;
    g[3 * H + j] = o;
    const double c = f * c_prev[j] + i * gg;
    const double h = o * std::tanh(c);
    c_out[j] = c;
    h_out[j] = h;
    h_copy[j] = h;
  }
}

// Backward of one row, units [j0, j1):
//   dh = grad_out + dh_rec (grad_out may be null);  tc = tanh(c)
//   dc = dc + dh * o * (1 - tc^2);  dG = [dc g i(1-i), dc c_prev f(1-f), dc i (1-g^2), dh tc o(1-o)]
//   dc <- dc * f (the carry to step t-1);  db (4w, indexed from j0 per gate) += dG
BM_INLINE void cell_backward_row(const float* g, const float* c, const float* c_prev, const float* grad_out,
                                 const float* dh_rec, float* dc, float* dg, float* db, int64_t H, int64_t j0,
                                 int64_t j1) {
  using V = Vec<float>;
  const int64_t w = j1 - j0;
  const V one = V::broadcast(1.0f);
  for (int64_t j = j0; j < j1; j += V::size) {
    const int n = static_cast<int>(min64(V::size, j1 - j));
    V dh = V::load(dh_rec + j, n);
    if (grad_out) dh = dh + V::load(grad_out + j, n);
    const V i = V::load(g + j, n), f = V::load(g + H + j, n);
    const V gg = V::load(g + 2 * H + j, n), o = V::load(g + 3 * H + j, n);
    const V tc = tanh_vec(V::load(c + j, n));
    const V dcv = V::fma(dh * o, one - tc * tc, V::load(dc + j, n));
    const V di = dcv * gg * i * (one - i);
    const V df = dcv * V::load(c_prev + j, n) * f * (one - f);
    const V dgg = dcv * i * (one - gg * gg);
    const V dout = dh * tc * o * (one - o);
    di.store(dg + j, n);
    df.store(dg + H + j, n);
    dgg.store(dg + 2 * H + j, n);
    dout.store(dg + 3 * H + j, n);
    (dcv * f).store(dc + j, n);
    float* b = db + (j - j0);
    (V::load(b, n) + di).store(b, n);
    (V::load(b + w, n) + df).store(b + w, n);
    (V::load(b + 2 * w, n) + dgg).store(b + 2 * w, n);
    (V::load(b + 3 * w, n) + dout).store(b + 3 * w, n);
  }
}

BM_INLINE void cell_backward_row(const double* g, const double* c, const double* c_prev, const double* grad_out,
                                 const double* dh_rec, double* dc, double* dg, double* db, int64_t H, int64_t j0,
                                 int64_t j1) {
  const int64_t w = j1 - j0;
  for (int64_t j = j0; j < j1; ++j) {
    const double dh = dh_rec[j] + (grad_out ? grad_out[j] : 0.0);
    const double i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
    const double tc = std::tanh(c[j]);
    const double dcv = dc[j] + dh * o * (1.0 - tc * tc);
    const double di = dcv * gg * i * (1.0 - i), df = dcv * c_prev[j] * f * (1.0 - f);
    const double dgg = dcv * i * (1.0 - gg * gg), dout = dh * tc * o * (1.0 - o);
    dg[j] = di;
    dg[H + j] = df;
    dg[2 * H + j] = dgg;
    dg[3 * H + j] = dout;
    dc[j] = dcv * f;
    double* b = db + (j - j0);
    b[0] += di;
    b[w] += df;
    b[2 * w] += dgg;
    b[3 * w] += dout;
  }
}

template <typename T>
BM_INLINE void copy_units(T* dst, const T* src, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) dst[j] = src ? src[j] : T(0);
}

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
