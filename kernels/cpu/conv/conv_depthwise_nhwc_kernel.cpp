// Depthwise convolution (groups == IC == OC) on the CPU, NHWC (channels_last): forward, gradient
// w.r.t. the input and w.r.t. weight and bias, any stride, padding and dilation. Compiled once
// per ISA path (kernels/cpu/simd.h); kernels/cpu/conv/conv.cpp dispatches.
//
// Vectorised along channels: a tile is NP pixels x one channel vector. The forward reads the
// image in place (pixels whose taps all lie inside go through the tile, the frame sums its valid
// taps); the stride-1 input gradient is that forward on grad_output with the flipped kernel,
// strided ones use the phase decomposition of conv_direct_kernel.cpp over a zero-padded band.
// The weight gradient keeps one partial per thread, summed in a fixed order after a barrier.
#include <omp.h>

#include <vector>

#include "bigmodel/conv.h"
#include "cpu/conv/conv_common.h"
#include "cpu/simd.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// out_j[c + l] = init[c + l] + sum_t w[t][c + l] * in_j[off[t] + c + l] for lanes l < n (n = size
// except at the channel tail).
template <typename T, int NP>
BM_INLINE void dw_tile(const T* const* in, const int64_t* off, const T* const* w, int ntaps, T* const* out,
                       const T* init, int64_t c, int n) {
  using V = Vec<T>;
  V acc[NP];
  const V b = init != nullptr ? V::load(init + c, n) : V::zero();
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j) acc[j] = b;
  for (int t = 0; t < ntaps; ++t) {
    const V wv = V::load(w[t] + c, n);
    const int64_t o = off[t] + c;
#pragma GCC unroll 16
    for (int j = 0; j < NP; ++j) acc[j] = V::fma(V::load(in[j] + o, n), wv, acc[j]);
  }
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j) acc[j].store(out[j] + c, n);
}

constexpr int kDwNP = 8;

// Every channel of pixels [0, npix); pixel(q, in, out) gives pixel q's input (before the tap
// offset) and output pointers at channel 0; weights are w[t] + c for channel c. Pixels past npix
// in the last tile repeat pixel 0 (storing the same values again).
template <typename T, typename PixelFn>
void dw_pixels(int64_t npix, int64_t C, const PixelFn& pixel, const int64_t* off, const T* const* w, int ntaps,
               const T* init) {
  constexpr int S = Vec<T>::size;
  const T* in[kDwNP];
  T* out[kDwNP];
  for (int64_t q0 = 0; q0 < npix; q0 += kDwNP) {
    for (int j = 0; j < kDwNP; ++j) {
      if (q0 + j < npix) {
        pixel(q0 + j, in[j], out[j]);
      } else {
        in[j] = in[0];
        out[j] = out[0];
      }
    }
    for (int64_t c = 0; c < C; c += S) dw_tile<T, kDwNP>(in, off, w, ntaps, out, init, c, static_cast<int>(min64(S, C - c)));
  }
}

// out[t * ld + l] += sum over the band's output pixels (r, ow) of
//   dy[(r*OW + ow)*dps + l] * x[r*xrs + ow*xcs + toff[t] + l]     for lanes l < nl
template <typename T, int NT>
void band_tap_sums(const T* x, int64_t rows, int64_t OW, int64_t xrs, int64_t xcs, const int64_t* toff, const T* dy,
                   int64_t dps, int nl, T* out, int64_t ld) {
  using V = Vec<T>;
  V acc[NT];
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t) acc[t] = V::zero();
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * xrs;
    const T* dr = dy + r * OW * dps;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const V d = V::load(dr + ow * dps, nl);
      const T* xp = xr + ow * xcs;
#pragma GCC unroll 12
      for (int t = 0; t < NT; ++t) acc[t] = V::fma(d, V::load(xp + toff[t], nl), acc[t]);
    }
  }
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t) (V::load(out + t * ld) + acc[t]).store(out + t * ld);
}

template <typename T>
void band_tap_sums_n(int nt, const T* x, int64_t rows, int64_t OW, int64_t xrs, int64_t xcs, const int64_t* toff,
                     const T* dy, int64_t dps, int nl, T* out, int64_t ld) {
  switch (nt) {
#define BIGMODEL_DW_CASE(k) \
  case k: return band_tap_sums<T, k>(x, rows, OW, xrs, xcs, toff, dy, dps, nl, out, ld);
    BIGMODEL_DW_CASE(1) BIGMODEL_DW_CASE(2) BIGMODEL_DW_CASE(3) BIGMODEL_DW_CASE(4) BIGMODEL_DW_CASE(5)
    BIGMODEL_DW_CASE(6) BIGMODEL_DW_CASE(7) BIGMODEL_DW_CASE(8) BIGMODEL_DW_CASE(9) BIGMODEL_DW_CASE(10)
    BIGMODEL_DW_CASE(11)
#undef BIGMODEL_DW_CASE
    default: return band_tap_sums<T, kTapChunk>(x, rows, OW, xrs, xcs, toff, dy, dps, nl, out, ld);
  }
}

// Outputs [lo, hi) along one dimension whose every tap lies inside [0, in).
BM_INLINE void interior_range(int64_t out, int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d, int64_t& lo,
                              int64_t& hi) {
  lo = pad <= 0 ? 0 : min64(out, ceil_div(pad, s));  // o*s - pad >= 0
  const int64_t last = in - 1 + pad - (k - 1) * d;  // o*s <= last
  hi = last < 0 ? lo : max64(lo, min64(out, last / s + 1));
}

// The forward reads the image in place: pixels whose taps all lie inside it go through the tile,
// the others (a one-pixel frame for 3x3 / padding 1) sum their valid taps only.
template <typename T>
void forward_nhwc(const Conv2dParams& p) {
  using V = Vec<T>;
  constexpr int S = V::size;
  const int64_t C = p.IC, taps = p.KH * p.KW;
  const T* x = static_cast<const T*>(p.input);
  const T* wsrc = static_cast<const T*>(p.weight);
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.output);
  AlignedBuffer wt_mem = AlignedBuffer::of<T>(taps * C);  // [t][c]
  T* wt = wt_mem.as<T>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < taps; ++t) wt[t * C + c] = wsrc[c * taps + t];
  int64_t ohl, ohh, owl, owh;
  interior_range(p.OH, p.H, p.KH, p.sH, p.pH, p.dH, ohl, ohh);
  interior_range(p.OW, p.W, p.KW, p.sW, p.pW, p.dW, owl, owh);
  const int nt_req = p.num_threads < 1 ? 1 : p.num_threads;
  const int64_t R = band_rows(p.N, p.OH, (p.sH * p.W + p.OW) * C * int64_t(sizeof(T)), 256 * 1024, nt_req);
  const int64_t nb = ceil_div(p.OH, R), items = p.N * nb;
  const int nt = double(p.N) * C * p.OH * p.OW * taps < 65536.0 ? 1 : nt_req;
  const ThreadScratch<T> ts(0, 2 * taps, 2 * taps, nt);
  int64_t* const offs = ts.offs;
  const T** const ptrs = ts.ptrs;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num();
    int64_t* off = offs + 2 * tid * taps;  // interior tap offsets, then a border pixel's
    int64_t* boff = off + taps;
    const T** wp = ptrs + 2 * tid * taps;
    const T** bw = wp + taps;
    for (int64_t t = 0; t < taps; ++t) {
      off[t] = ((t / p.KW) * p.dH * p.W + (t % p.KW) * p.dW) * C;
      wp[t] = wt + t * C;
    }
    int64_t i0, i1;
    split_range(items, tid, omp_get_num_threads(), i0, i1);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nb, oh0 = (item % nb) * R, oh1 = min64(p.OH, oh0 + R);
      const T* xn = x + n * p.H * p.W * C;
      auto border = [&](int64_t oh, int64_t ow) {
        int nv = 0;
        for (int64_t kh = 0; kh < p.KH; ++kh) {
          const int64_t ih = oh * p.sH - p.pH + kh * p.dH;
          if (ih < 0 || ih >= p.H) continue;
          for (int64_t kw = 0; kw < p.KW; ++kw) {
            const int64_t iw = ow * p.sW - p.pW + kw * p.dW;
            if (iw < 0 || iw >= p.W) continue;
            boff[nv] = (ih * p.W + iw) * C;
            bw[nv++] = wt + (kh * p.KW + kw) * C;
          }
        }
        T* out = y + ((n * p.OH + oh) * p.OW + ow) * C;
        for (int64_t c = 0; c < C; c += S) {
          const int nl = static_cast<int>(min64(S, C - c));
          V acc = bias != nullptr ? V::load(bias + c, nl) : V::zero();
          for (int v = 0; v < nv; ++v) acc = V::fma(V::load(xn + boff[v] + c, nl), V::load(bw[v] + c, nl), acc);
          acc.store(out + c, nl);
        }
      };
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        if (oh < ohl || oh >= ohh) {
          for (int64_t ow = 0; ow < p.OW; ++ow) border(oh, ow);
          continue;
        }
        const T* xrow = xn + (oh * p.sH - p.pH) * p.W * C;
        T* yrow = y + (n * p.OH + oh) * p.OW * C;
        auto pixel = [&](int64_t q, const T*& in, T*& out) {
          const int64_t ow = owl + q;
          in = xrow + (ow * p.sW - p.pW) * C;
          out = yrow + ow * C;
        };
        dw_pixels<T>(owh - owl, C, pixel, off, wp, static_cast<int>(taps), bias);
        for (int64_t ow = 0; ow < owl; ++ow) border(oh, ow);
        for (int64_t ow = owh; ow < p.OW; ++ow) border(oh, ow);
      }
    }
  }
}

template <typename T>
void backward_input_nhwc(const Conv2dParams& p) {
  const int64_t C = p.IC, taps = p.KH * p.KW;
  if (p.sH == 1 && p.sW == 1) {
    // grad_input = the forward of grad_output with the flipped kernel and padding (K-1)*d - p
    // (negative padding crops), output size (H, W).
    AlignedBuffer flipped_mem = AlignedBuffer::of<T>(C * taps);
    T* flipped = flipped_mem.as<T>();
    const T* w = static_cast<const T*>(p.weight);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < taps; ++t) flipped[c * taps + t] = w[c * taps + taps - 1 - t];
    Conv2dParams q = p;
    q.input = p.grad_output;
    q.weight = flipped;
    q.bias = nullptr;
    q.output = p.grad_input;
    q.H = p.OH;
    q.W = p.OW;
    q.OH = p.H;
    q.OW = p.W;
    q.pH = (p.KH - 1) * p.dH - p.pH;
    q.pW = (p.KW - 1) * p.dW - p.pW;
    forward_nhwc<T>(q);
    return;
  }
  const T* dy = static_cast<const T*>(p.grad_output);
  const T* wsrc = static_cast<const T*>(p.weight);
  T* dx = static_cast<T*>(p.grad_input);
  AlignedBuffer wt_mem = AlignedBuffer::of<T>(taps * C);  // [t][c]
  T* wt = wt_mem.as<T>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < taps; ++t) wt[t * C + c] = wsrc[c * taps + t];
  const int64_t owb0 = floor_div(p.pW - (p.KW - 1) * p.dW, p.sW);
  const int64_t Wb = floor_div(p.W - 1 + p.pW, p.sW) - owb0 + 1;
  const int nt_req = p.num_threads < 1 ? 1 : p.num_threads;
  const int64_t R = band_rows(p.N, p.H, (ceil_div(Wb, p.sH) + p.W) * C * int64_t(sizeof(T)), 256 * 1024, nt_req);
  const int64_t nb = ceil_div(p.H, R), items = p.N * nb;
  auto oh_range = [&](int64_t ih0, int64_t ih1, int64_t& ohb0, int64_t& Rb) {
    ohb0 = floor_div(ih0 + p.pH - (p.KH - 1) * p.dH, p.sH);
    Rb = floor_div(ih1 - 1 + p.pH, p.sH) - ohb0 + 1;
  };
  int64_t Rb_max = 1;
  for (int64_t b = 0; b < nb; ++b) {
    int64_t o, r;
    oh_range(b * R, min64(p.H, b * R + R), o, r);
    Rb_max = max64(Rb_max, r);
  }
  const int64_t band_sz = round_up(band_elems(C, Rb_max, Wb), 16);
  const int nt = double(p.N) * C * p.OH * p.OW * taps < 65536.0 ? 1 : nt_req;
  const ThreadScratch<T> ts(band_sz, taps, 2 * taps, nt);
  T* const scratch = ts.data;
  int64_t* const offs = ts.offs;
  const T** const ptrs = ts.ptrs;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num();
    int64_t* off = offs + tid * taps;
    const T** wp = ptrs + 2 * tid * taps;
    int64_t i0, i1;
    split_range(items, tid, omp_get_num_threads(), i0, i1);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nb, ih0 = (item % nb) * R, ih1 = min64(p.H, ih0 + R);
      int64_t ohb0, Rb;
      oh_range(ih0, ih1, ohb0, Rb);
      const Band<T> band = make_band(dy + n * C * p.OH * p.OW, Layout::nhwc, C, p.OH, p.OW, ohb0, Rb, owb0, Wb, true,
                                     scratch + tid * band_sz);
      T* xbase = dx + (n * p.H + ih0) * p.W * C;
      for (int64_t rh = 0; rh < p.sH; ++rh) {
        const int64_t ihf = ih0 + pos_mod(rh - (ih0 + p.pH), p.sH);
        const int64_t nh = ihf < ih1 ? ceil_div(ih1 - ihf, p.sH) : 0;
        for (int64_t rw = 0; rw < p.sW; ++rw) {
          const int64_t iwf = pos_mod(rw - p.pW, p.sW);
          const int64_t nw = iwf < p.W ? ceil_div(p.W - iwf, p.sW) : 0;
          if (nh == 0 || nw == 0) continue;
          int ntaps = 0;
          for (int64_t kh = 0; kh < p.KH; ++kh) {
            if ((kh * p.dH) % p.sH != rh) continue;
            for (int64_t kw = 0; kw < p.KW; ++kw) {
              if ((kw * p.dW) % p.sW != rw) continue;
              off[ntaps] = -((kh * p.dH - rh) / p.sH) * band.rs - ((kw * p.dW - rw) / p.sW) * band.cs;
              wp[ntaps++] = wt + (kh * p.KW + kw) * C;
            }
          }
          const int64_t r0 = (ihf + p.pH - rh) / p.sH - ohb0, c0 = (iwf + p.pW - rw) / p.sW - owb0;
          auto pixel = [&](int64_t q, const T*& in, T*& out) {
            const int64_t i = q / nw, j = q - i * nw;
            in = band.base + (r0 + i) * band.rs + (c0 + j) * band.cs;
            out = xbase + ((ihf - ih0 + i * p.sH) * p.W + iwf + j * p.sW) * C;
          };
          dw_pixels<T>(nh * nw, C, pixel, off, wp, ntaps, nullptr);
        }
      }
    }
  }
}

template <typename T>
void backward_weight_nhwc(const Conv2dParams& p) {
  using V = Vec<T>;
  constexpr int S = V::size;
  const int64_t C = p.IC, taps = p.KH * p.KW, Cs = round_up(C, S);
  const T* x = static_cast<const T*>(p.input);
  const T* dy = static_cast<const T*>(p.grad_output);
  T* dw = static_cast<T*>(p.grad_weight);
  T* db = static_cast<T*>(p.grad_bias);
  const int64_t Wb = (p.OW - 1) * p.sW + (p.KW - 1) * p.dW + 1;
  const int nt_req = p.num_threads < 1 ? 1 : p.num_threads;
  const int64_t R = band_rows(p.N, p.OH, (p.sH * Wb + p.OW) * C * int64_t(sizeof(T)), 256 * 1024, nt_req);
  const int64_t nb = ceil_div(p.OH, R), items = p.N * nb;
  const int64_t band_sz = band_elems(C, (R - 1) * p.sH + (p.KH - 1) * p.dH + 1, Wb);
  const int64_t partial_sz = (taps + 1) * Cs;  // [t][Cs], then bias [Cs]
  const int64_t per_thread = round_up(partial_sz + band_sz, 16);
  const int nt = double(p.N) * C * p.OH * p.OW * taps < 65536.0 ? 1 : nt_req;
  const ThreadScratch<T> ts(per_thread, taps, 0, nt);
  T* const scratch = ts.data;
  int64_t* const offs = ts.offs;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t* toff = offs + taps * tid;
    T* partial = scratch + tid * per_thread;
    T* dbp = partial + taps * Cs;
    fill_zero(partial, partial_sz);
    std::vector<double> dbd(db != nullptr ? C : 0, 0.0);
    int64_t i0, i1;
    split_range(items, tid, nth, i0, i1);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nb, oh0 = (item % nb) * R, rows = min64(R, p.OH - oh0);
      const Band<T> band = make_band(x + n * C * p.H * p.W, Layout::nhwc, C, p.H, p.W, oh0 * p.sH - p.pH,
                                     (rows - 1) * p.sH + (p.KH - 1) * p.dH + 1, -p.pW, Wb, true,
                                     partial + partial_sz);
      const T* dyb = dy + (n * p.OH + oh0) * p.OW * C;
      for (int64_t c = 0; c < C; c += S) {
        const int nl = static_cast<int>(min64(S, C - c));
        if (db != nullptr)  // summed in double, as a long float sum drifts
          for (int64_t q = 0; q < rows * p.OW; ++q)
            for (int64_t k = 0; k < nl; ++k) dbd[c + k] += double(dyb[q * C + c + k]);
        for (int64_t t = 0; t < taps; ++t) toff[t] = (t / p.KW) * p.dH * band.rs + (t % p.KW) * p.dW * band.cs + c;
        for (int64_t t0 = 0; t0 < taps; t0 += kTapChunk)
          band_tap_sums_n(static_cast<int>(min64(kTapChunk, taps - t0)), band.base, rows, p.OW, p.sH * band.rs,
                          p.sW * band.cs, toff + t0, dyb + c, C, nl, partial + t0 * Cs + c, Cs);
      }
    }
    for (int64_t k = 0; k < int64_t(dbd.size()); ++k) dbp[k] = T(dbd[k]);
#pragma omp barrier
    int64_t c0, c1;
    split_range(C, tid, nth, c0, c1);
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t t = 0; t < taps; ++t) dw[c * taps + t] = sum_parts(scratch + t * Cs + c, nth, per_thread);
      if (db != nullptr) db[c] = sum_parts(scratch + taps * Cs + c, nth, per_thread);
    }
  }
}

}  // namespace

void conv2d_depthwise_nhwc_forward(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { forward_nhwc<T>(p); }); }

void conv2d_depthwise_nhwc_backward_input(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward_input_nhwc<T>(p); }); }

void conv2d_depthwise_nhwc_backward_weight(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward_weight_nhwc<T>(p); }); }

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
