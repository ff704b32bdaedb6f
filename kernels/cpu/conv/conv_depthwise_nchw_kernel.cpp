// Depthwise convolution (groups == IC == OC: one KH x KW filter per channel) on the CPU, NCHW:
// forward, gradient w.r.t. the input and w.r.t. weight and bias, any stride, padding and
// dilation. Compiled once per ISA path (kernels/cpu/simd.h); kernels/cpu/conv/conv.cpp dispatches
// (channels_last tensors go to conv_depthwise_nhwc_kernel.cpp).
//
// There is no reduction over channels, so the general direct tile (conv_direct_kernel.cpp) would
// use one lane in Vec::size. Here one (n, c) plane at a time is a 2-D stencil vectorised along
// output columns: the plane is staged zero-padded in scratch (small: it stays in L1/L2), each
// output vector is the sum of KH*KW (strided) vector loads times broadcast weights, in blocks of
// 2 rows x up to 4 column vectors (8 independent accumulators). The input gradient is the same
// stencil with the kernel flipped when the stride is 1, and a scatter into a padded plane
// otherwise. The weight gradient walks the planes in memory order with a vector accumulator per
// tap, reduced across lanes at the end of each plane into per-thread partials.
//
// A depthwise convolution does 2*KH*KW flops per output element against 2 elements of traffic,
// so it is bound by memory bandwidth at realistic sizes; the aim is one pass over each tensor,
// no transposes, and full vectors.
#include <omp.h>

#include "bigmodel/conv.h"
#include "cpu/conv/conv_common.h"
#include "cpu/simd.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// Lanes i < n read p[i * s]; `room` elements from p are readable.
template <typename T>
BM_INLINE Vec<T> load_cols(const T* p, int64_t s, int n, int64_t room) {
  using V = Vec<T>;
  if (s == 1) return V::load(p, n);
  if (s == 2) return n == V::size && room >= 2 * V::size ? V::load_even(p) : V::load_even(p, n);
  return V::load_strided(p, s, n);
}


// A padded plane: element (r, c) at base[r * ld + c], `cols` columns readable per row.
template <typename T>
struct Plane {
  const T* base;
  int64_t ld, cols;
};

// out[oh * OW + ow] = bias + sum_{kh, kw} w[kh * KW + kw] * in(oh * sH + kh * dH, ow * sW + kw * dW)
// for NR rows from oh and NB vectors of columns starting at ow[b] (lanes < n of each, n < size
// only when the row is shorter than a vector). NR x NB independent accumulators keep both FMA
// pipes busy; weights are broadcast once per tap for all of them.
template <typename T, int NR, int NB>
BM_INLINE void stencil_block(const Plane<T>& in, T* out, int64_t OW, const T* w, T bias, int64_t oh,
                             const int64_t* ow, int64_t KH, int64_t KW, int64_t sH, int64_t sW, int64_t dH,
                             int64_t dW, int n) {
  using V = Vec<T>;
  V acc[NR][NB];
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) acc[r][b] = V::broadcast(bias);
  for (int64_t kh = 0; kh < KH; ++kh) {
    const T* row0 = in.base + (oh * sH + kh * dH) * in.ld;
    for (int64_t kw = 0; kw < KW; ++kw) {
      const V wv = V::broadcast(w[kh * KW + kw]);
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) {
        const T* row = row0 + r * sH * in.ld;
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) {
          const int64_t col = ow[b] * sW + kw * dW;
          const V x = sW == 1 && n == V::size ? V::load(row + col) : load_cols(row + col, sW, n, in.cols - col);
          acc[r][b] = V::fma(x, wv, acc[r][b]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) acc[r][b].store(out + (oh + r) * OW + ow[b], n);
}

template <typename T, int NR>
void stencil_rows(const Plane<T>& in, T* out, int64_t OW, const T* w, T bias, int64_t oh, const int64_t* starts,
                  int64_t nstarts, int64_t KH, int64_t KW, int64_t sH, int64_t sW, int64_t dH, int64_t dW, int n) {
  int64_t b = 0;
  for (; b + 4 <= nstarts; b += 4)
    stencil_block<T, NR, 4>(in, out, OW, w, bias, oh, starts + b, KH, KW, sH, sW, dH, dW, n);
  switch (nstarts - b) {
    case 3: return stencil_block<T, NR, 3>(in, out, OW, w, bias, oh, starts + b, KH, KW, sH, sW, dH, dW, n);
    case 2: return stencil_block<T, NR, 2>(in, out, OW, w, bias, oh, starts + b, KH, KW, sH, sW, dH, dW, n);
    case 1: return stencil_block<T, NR, 1>(in, out, OW, w, bias, oh, starts + b, KH, KW, sH, sW, dH, dW, n);
    default: return;
  }
}

// The whole (OH, OW) plane. Column vectors start at 0, S, 2S, ... and the last one ends flush
// with the row (overlapping its neighbour: the overlap is recomputed, never masked); rows go in
// pairs. `starts` has room for OW / S + 1 entries.
template <typename T>
void stencil_plane(const Plane<T>& in, T* out, int64_t OH, int64_t OW, const T* w, T bias, int64_t KH, int64_t KW,
                   int64_t sH, int64_t sW, int64_t dH, int64_t dW, int64_t* starts) {
  constexpr int S = Vec<T>::size;
  int64_t nstarts = 0;
  int n = S;
  if (OW < S) {
    starts[nstarts++] = 0;
    n = static_cast<int>(OW);
  } else {
    for (int64_t ow = 0; ow + S <= OW; ow += S) starts[nstarts++] = ow;
    if (OW % S != 0) starts[nstarts++] = OW - S;
  }
  int64_t oh = 0;
  for (; oh + 2 <= OH; oh += 2)
    stencil_rows<T, 2>(in, out, OW, w, bias, oh, starts, nstarts, KH, KW, sH, sW, dH, dW, n);
  if (oh < OH) stencil_rows<T, 1>(in, out, OW, w, bias, oh, starts, nstarts, KH, KW, sH, sW, dH, dW, n);
}

template <typename T>
void forward_nchw(const Conv2dParams& p) {
  const int64_t C = p.IC, taps = p.KH * p.KW;
  const int64_t Hb = (p.OH - 1) * p.sH + (p.KH - 1) * p.dH + 1, Wb = (p.OW - 1) * p.sW + (p.KW - 1) * p.dW + 1;
  const T* x = static_cast<const T*>(p.input);
  const T* w = static_cast<const T*>(p.weight);
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.output);
  const int64_t planes = p.N * C;
  const int nt = double(planes) * p.OH * p.OW * taps < 65536.0 ? 1 : (p.num_threads < 1 ? 1 : p.num_threads);
  const int64_t per_thread = round_up(Hb * Wb, 16);
  const ThreadScratch<T> ts(per_thread, p.OW / Vec<T>::size + 2, 0, nt);
  T* const scratch = ts.data;
  int64_t* const starts = ts.offs;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num();
    int64_t i0, i1;
    split_range(planes, tid, omp_get_num_threads(), i0, i1);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t c = i % C;
      const Band<T> b = make_band(x + i * p.H * p.W, Layout::nchw, 1, p.H, p.W, -p.pH, Hb, -p.pW, Wb, false,
                                  scratch + tid * per_thread);
      stencil_plane(Plane<T>{b.base, b.rs, Wb}, y + i * p.OH * p.OW, p.OH, p.OW, w + c * taps,
                    bias != nullptr ? bias[c] : T(0), p.KH, p.KW, p.sH, p.sW, p.dH, p.dW,
                    starts + tid * (p.OW / Vec<T>::size + 2));
    }
  }
}

template <typename T>
void backward_input_nchw(const Conv2dParams& p) {
  using V = Vec<T>;
  constexpr int S = V::size;
  const int64_t C = p.IC, taps = p.KH * p.KW;
  const T* dy = static_cast<const T*>(p.grad_output);
  const T* w = static_cast<const T*>(p.weight);
  T* dx = static_cast<T*>(p.grad_input);
  const int64_t planes = p.N * C;
  const bool unit_stride = p.sH == 1 && p.sW == 1;
  // stride 1: dx = stencil of grad_output padded by (K-1)*d - p with the flipped kernel.
  const int64_t qH = (p.KH - 1) * p.dH - p.pH, qW = (p.KW - 1) * p.dW - p.pW;
  const int64_t Hb1 = p.H + (p.KH - 1) * p.dH, Wb1 = p.W + (p.KW - 1) * p.dW;
  // stride > 1: scatter into a padded plane covering rows [-pH, -pH + HbS), columns [-pW, -pW + WbS)
  const int64_t HbS = (p.OH - 1) * p.sH + (p.KH - 1) * p.dH + 1, WbS = (p.OW - 1) * p.sW + (p.KW - 1) * p.dW + 1;
  const int64_t per_thread = round_up(unit_stride ? Hb1 * Wb1 + taps : HbS * (WbS + 2 * S), 16);
  const int nt = double(planes) * p.OH * p.OW * taps < 65536.0 ? 1 : (p.num_threads < 1 ? 1 : p.num_threads);
  const ThreadScratch<T> ts(per_thread, p.W / S + 2, 0, nt);
  T* const scratch = ts.data;
  int64_t* const starts = ts.offs;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num();
    T* buf = scratch + tid * per_thread;
    int64_t i0, i1;
    split_range(planes, tid, omp_get_num_threads(), i0, i1);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t c = i % C;
      const T* wc = w + c * taps;
      T* dxp = dx + i * p.H * p.W;
      if (unit_stride) {
        T* wf = buf + Hb1 * Wb1;  // flipped kernel
        for (int64_t t = 0; t < taps; ++t) wf[t] = wc[taps - 1 - t];
        const Band<T> b = make_band(dy + i * p.OH * p.OW, Layout::nchw, 1, p.OH, p.OW, -qH, Hb1, -qW, Wb1, false, buf);
        stencil_plane(Plane<T>{b.base, b.rs, Wb1}, dxp, p.H, p.W, wf, T(0), p.KH, p.KW, 1, 1, p.dH, p.dW,
                      starts + tid * (p.W / S + 2));
        continue;
      }
      // acc(oh*sH + kh*dH, ow*sW + kw*dW) += w[kh, kw] * dy[oh, ow]; rows are WbS + 2S wide so that
      // the interleaved adds of the stride-2 path may touch up to 2S - 1 columns past WbS.
      const int64_t ld = WbS + 2 * S;
      fill_zero(buf, HbS * ld);
      const T* dyp = dy + i * p.OH * p.OW;
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        const T* drow = dyp + oh * p.OW;
        for (int64_t kh = 0; kh < p.KH; ++kh) {
          T* arow = buf + (oh * p.sH + kh * p.dH) * ld;
          for (int64_t kw = 0; kw < p.KW; ++kw) {
            const T wv = wc[kh * p.KW + kw];
            T* a = arow + kw * p.dW;
            int64_t ow = 0;
            if (p.sW == 2) {
              const V wvec = V::broadcast(wv);
              for (; ow + S <= p.OW; ow += S) V::add_interleaved(a + 2 * ow, V::load(drow + ow) * wvec, V::zero());
            }
            for (; ow < p.OW; ++ow) a[ow * p.sW] += wv * drow[ow];
          }
        }
      }
      for (int64_t ih = 0; ih < p.H; ++ih) {
        const int64_t r = ih + p.pH;
        T* drow = dxp + ih * p.W;
        for (int64_t iw = 0; iw < p.W; ++iw) {
          const int64_t cc = iw + p.pW;
          drow[iw] = r < HbS && cc < WbS ? buf[r * ld + cc] : T(0);
        }
      }
    }
  }
}

// out[t] += sum over output pixels of dy[oh][ow] * in(oh*sH + row of tap t, ow*sW + col of tap t)
// for one plane (NCHW), OW a multiple of the vector width (the caller pads dy and the input with
// zeros). toff[t] = row offset + col offset of tap t; tcol[t] its column (for the strided loads).
template <typename T, int NT, bool kUnitStride>
void plane_tap_sums(const T* dyp, int64_t OH, int64_t OW, const Plane<T>& in, int64_t sH, int64_t sW,
                    const int64_t* toff, const int64_t* tcol, T* out) {
  using V = Vec<T>;
  constexpr int S = V::size;
  V acc[NT];
  int64_t o[NT];
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t) {
    acc[t] = V::zero();
    o[t] = toff[t];
  }
  for (int64_t oh = 0; oh < OH; ++oh) {
    const T* drow = dyp + oh * OW;
    const T* xrow = in.base + oh * sH * in.ld;
    for (int64_t ow = 0; ow < OW; ow += S) {
      const V d = V::load(drow + ow);
      if constexpr (kUnitStride) {
        const T* xp = xrow + ow;
#pragma GCC unroll 12
        for (int t = 0; t < NT; ++t) acc[t] = V::fma(d, V::load(xp + o[t]), acc[t]);
      } else {
#pragma GCC unroll 12
        for (int t = 0; t < NT; ++t) {
          const int64_t col = ow * sW + tcol[t];
          acc[t] = V::fma(d, load_cols(xrow + o[t] - tcol[t] + col, sW, S, in.cols - col), acc[t]);
        }
      }
    }
  }
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t) out[t] += reduce_add(acc[t]);
}

template <typename T, bool kUnitStride>
void plane_tap_sums_n(int nt, const T* dyp, int64_t OH, int64_t OW, const Plane<T>& in, int64_t sH, int64_t sW,
                      const int64_t* toff, const int64_t* tcol, T* out) {
  switch (nt) {
#define BIGMODEL_DW_CASE(k) \
  case k: return plane_tap_sums<T, k, kUnitStride>(dyp, OH, OW, in, sH, sW, toff, tcol, out);
    BIGMODEL_DW_CASE(1) BIGMODEL_DW_CASE(2) BIGMODEL_DW_CASE(3) BIGMODEL_DW_CASE(4) BIGMODEL_DW_CASE(5)
    BIGMODEL_DW_CASE(6) BIGMODEL_DW_CASE(7) BIGMODEL_DW_CASE(8) BIGMODEL_DW_CASE(9) BIGMODEL_DW_CASE(10)
    BIGMODEL_DW_CASE(11)
#undef BIGMODEL_DW_CASE
    default: return plane_tap_sums<T, kTapChunk, kUnitStride>(dyp, OH, OW, in, sH, sW, toff, tcol, out);
  }
}

// Copies rows [r0, r0 + rows) x columns [c0, c0 + used) of an (H, W) plane into dst (row stride
// cols >= used), zero outside the plane and in columns [used, cols).
template <typename T>
void copy_plane(T* dst, const T* src, int64_t H, int64_t W, int64_t r0, int64_t rows, int64_t c0, int64_t used,
                int64_t cols) {
  const int64_t cl = min64(used, max64(0, -c0)), cr = max64(cl, min64(used, W - c0));
  for (int64_t r = 0; r < rows; ++r) {
    T* d = dst + r * cols;
    const int64_t ih = r0 + r;
    if (ih < 0 || ih >= H) {
      fill_zero(d, cols);
      continue;
    }
    const T* s = src + ih * W + c0;
    fill_zero(d, cl);
    for (int64_t c = cl; c < cr; ++c) d[c] = s[c];
    fill_zero(d + cr, cols - cr);
  }
}

// Planes are visited in memory order (n, c), so both tensors stream sequentially; each thread
// keeps partial sums for every channel (C x (taps + 1), small), added in a fixed order after a
// barrier. Per plane, grad_output is staged with its rows padded to whole vectors and the input
// with matching zero columns, so every load is a full vector and the padding lanes add zeros.
template <typename T>
void backward_weight_nchw(const Conv2dParams& p) {
  using V = Vec<T>;
  constexpr int S = V::size;
  const int64_t C = p.IC, taps = p.KH * p.KW;
  const int64_t OWr = round_up(p.OW, S);
  const int64_t Hb = (p.OH - 1) * p.sH + (p.KH - 1) * p.dH + 1;
  const int64_t Wused = (p.OW - 1) * p.sW + (p.KW - 1) * p.dW + 1;  // input columns the windows read
  const int64_t Wb = (OWr - 1) * p.sW + (p.KW - 1) * p.dW + 1 + (p.sW == 2 ? 2 * S : 0);  // + room for load_even
  const T* x = static_cast<const T*>(p.input);
  const T* dy = static_cast<const T*>(p.grad_output);
  T* dw = static_cast<T*>(p.grad_weight);
  T* db = static_cast<T*>(p.grad_bias);
  const int nt = double(p.N) * C * p.OH * p.OW * taps < 65536.0 ? 1 : (p.num_threads < 1 ? 1 : p.num_threads);
  const int64_t partial_sz = round_up(C * (taps + 1), 16);  // [c][taps], then bias [c]
  const int64_t per_thread = partial_sz + round_up(Hb * Wb, 16) + round_up(p.OH * OWr, 16);
  const ThreadScratch<T> ts(per_thread, 2 * taps, 0, nt);
  T* const scratch = ts.data;
  int64_t* const offs = ts.offs;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    T* partial = scratch + tid * per_thread;
    T* xplane = partial + partial_sz;
    T* dplane = xplane + round_up(Hb * Wb, 16);
    fill_zero(partial, partial_sz);
    int64_t* toff = offs + 2 * taps * tid;
    int64_t* tcol = toff + taps;
    for (int64_t t = 0; t < taps; ++t) {
      tcol[t] = (t % p.KW) * p.dW;
      toff[t] = (t / p.KW) * p.dH * Wb + tcol[t];
    }
    int64_t i0, i1;
    split_range(p.N * C, tid, nth, i0, i1);
    for (int64_t plane = i0; plane < i1; ++plane) {
      const int64_t c = plane % C;
      // only the columns some window reads hold input: the others meet zero gradient lanes, and
      // 0 * inf would otherwise turn into NaN
      copy_plane(xplane, x + plane * p.H * p.W, p.H, p.W, -p.pH, Hb, -p.pW, Wused, Wb);
      copy_plane(dplane, dy + plane * p.OH * p.OW, p.OH, p.OW, 0, p.OH, 0, p.OW, OWr);
      if (db != nullptr) {  // OH * OWr is a multiple of S
        V s0 = V::zero(), s1 = V::zero();
        int64_t k = 0;
        for (; k + 2 * S <= p.OH * OWr; k += 2 * S) {
          s0 = s0 + V::load(dplane + k);
          s1 = s1 + V::load(dplane + k + S);
        }
        if (k < p.OH * OWr) s0 = s0 + V::load(dplane + k);
        partial[C * taps + c] += reduce_add(s0 + s1);
      }
      for (int64_t t0 = 0; t0 < taps; t0 += kTapChunk) {
        const int n = static_cast<int>(min64(kTapChunk, taps - t0));
        const Plane<T> in{xplane, Wb, Wb};
        T* out = partial + c * taps + t0;
        if (p.sW == 1)
          plane_tap_sums_n<T, true>(n, dplane, p.OH, OWr, in, p.sH, 1, toff + t0, tcol + t0, out);
        else
          plane_tap_sums_n<T, false>(n, dplane, p.OH, OWr, in, p.sH, p.sW, toff + t0, tcol + t0, out);
      }
    }
#pragma omp barrier
    int64_t c0, c1;
    split_range(C, tid, nth, c0, c1);
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t t = 0; t < taps; ++t) dw[c * taps + t] = sum_parts(scratch + c * taps + t, nth, per_thread);
      if (db != nullptr) db[c] = sum_parts(scratch + C * taps + c, nth, per_thread);
    }
  }
}

}  // namespace

void conv2d_depthwise_nchw_forward(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { forward_nchw<T>(p); }); }

void conv2d_depthwise_nchw_backward_input(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward_input_nchw<T>(p); }); }

void conv2d_depthwise_nchw_backward_weight(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward_weight_nchw<T>(p); }); }

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
