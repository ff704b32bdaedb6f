// Gradient of a convolution w.r.t. its weight and bias on the CPU, NCHW and NHWC, any kernel
// size, stride, padding, dilation and groups (depthwise ones go to conv_depthwise_*_kernel.cpp).
// Compiled once per ISA path (kernels/cpu/simd.h).
//
//   grad_weight[g*OCg + oc, ic, kh, kw] = sum_{n, oh, ow} grad_output[n, g*OCg + oc, oh, ow]
//                                         * input[n, g*ICg + ic, oh*sH - pH + kh*dH, ow*sW - pW + kw*dW]
//   grad_bias[oc] = sum_{n, oh, ow} grad_output[n, oc, oh, ow]
//
// A GEMM reduced over N*OH*OW: for each tap, (ICg x OCg) += X_tap^T (ICg x pixels) * dY (pixels x OCg).
// The work is cut into the same bands as the forward (R output rows of one image, the input rows
// they read staged in a zero-padded scratch band, grad_output staged as NHWC with channels padded
// to the vector width). A register tile keeps NI reduction rows (input channels, or (kw, ic) pairs
// when they are contiguous) x NV vectors of output channels and sweeps every pixel of the band:
//
//   acc[i][v] += x[pixel, row i] (broadcast) * dy[pixel, v]
//
// so the sum over a band's pixels never leaves registers. Each thread adds its tiles into its own
// partial grad_weight (no atomics, no shared writes); after one barrier the partials are summed
// in a fixed order and transposed into the (OC, ICg, KH, KW) layout. The result depends on the
// thread count only through the order of that final sum.
#include <omp.h>

#include <vector>

#include "bigmodel/conv.h"
#include "cpu/conv/conv_common.h"
#include "cpu/simd.h"
#include "cpu/transpose.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// out[i][v*S + l] += sum_{r < rows, c < cols} x[r*xrs + c*xcs + row_off[i]] * dy[r*drs + c*dcs + v*S + l]
// (row_off[i] = i when kContig).
template <typename T, int NV, int NI, bool kContig>
BM_INLINE void weight_tile(const T* x, const int64_t* row_off, int64_t rows, int64_t cols, int64_t xrs, int64_t xcs,
                           const T* dy, int64_t drs, int64_t dcs, T* const* out) {
  using V = Vec<T>;
  constexpr int S = V::size;
  V acc[NI][NV];
#pragma GCC unroll 16
  for (int i = 0; i < NI; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  int64_t off[NI];
#pragma GCC unroll 16
  for (int i = 0; i < NI; ++i) off[i] = kContig ? i : row_off[i];
  for (int64_t r = 0; r < rows; ++r) {
    const T* xp = x + r * xrs;
    const T* dp = dy + r * drs;
    for (int64_t c = 0; c < cols; ++c) {
      V d[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) d[v] = V::load(dp + v * S);
#pragma GCC unroll 16
      for (int i = 0; i < NI; ++i) {
        const V b = V::broadcast(xp[off[i]]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(d[v], b, acc[i][v]);
      }
      xp += xcs;
      dp += dcs;
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < NI; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) (V::load(out[i] + v * S) + acc[i][v]).store(out[i] + v * S);
}

// Where one band's tiles read and write.
template <typename T>
struct WeightBlock {
  const T* x;           // input band at the tap's first reduction row
  int64_t rows, cols;   // output pixels of the band
  int64_t xrs, xcs;     // input step per output row / column
  int64_t chs;          // input step per reduction row
  const T* dy;          // grad_output band at the first output channel of the block
  int64_t drs, dcs;     // grad_output step per output row / column
  T* out;               // partial grad_weight row 0 at the block's first output channel
  int64_t out_ld;       // partial grad_weight step per reduction row
  int64_t M;            // reduction rows
  T* dummy;             // NI rows of kMaxNV * S elements for the unused rows of the last tile
};

template <typename T, int NV>
void weight_rows(const WeightBlock<T>& b) {
  constexpr int S = Vec<T>::size;
  constexpr int NI = np_for(NV);
  int64_t row_off[NI];
  T* out[NI];
  for (int64_t m0 = 0; m0 < b.M; m0 += NI) {
    const int valid = static_cast<int>(min64(NI, b.M - m0));
    for (int i = 0; i < NI; ++i) {
      row_off[i] = (i < valid ? i : 0) * b.chs;
      out[i] = i < valid ? b.out + (m0 + i) * b.out_ld : b.dummy + i * kMaxNV * S;
    }
    const T* x = b.x + m0 * b.chs;
    if (valid == NI && b.chs == 1)
      weight_tile<T, NV, NI, true>(x, row_off, b.rows, b.cols, b.xrs, b.xcs, b.dy, b.drs, b.dcs, out);
    else
      weight_tile<T, NV, NI, false>(x, row_off, b.rows, b.cols, b.xrs, b.xcs, b.dy, b.drs, b.dcs, out);
  }
}

template <typename T>
void weight_block(int nv, const WeightBlock<T>& b) {
  switch (nv) {
    case 1: return weight_rows<T, 1>(b);
    case 2: return weight_rows<T, 2>(b);
    default: break;
  }
  if constexpr (kMaxNV >= 4) {
    if (nv == 3) return weight_rows<T, 3>(b);
    return weight_rows<T, 4>(b);
  }
}

template <typename T>
void backward_weight(const Conv2dParams& p) {
  constexpr int S = Vec<T>::size;
  const int64_t G = p.groups, ICg = p.IC / G, OCg = p.OC / G;
  const int64_t OCs = round_up(OCg, S), OCb = G * OCs, nvec = OCs / S;
  const int64_t taps = p.KH * p.KW;
  const T* x = static_cast<const T*>(p.input);
  const T* dy = static_cast<const T*>(p.grad_output);
  T* dw = static_cast<T*>(p.grad_weight);
  T* db = static_cast<T*>(p.grad_bias);

  const int64_t Wb = (p.OW - 1) * p.sW + (p.KW - 1) * p.dW + 1;
  const int nt_req = p.num_threads < 1 ? 1 : p.num_threads;
  const int64_t R = band_rows(p.N, p.OH, (p.sH * Wb * p.IC + p.OW * OCb) * int64_t(sizeof(T)), 256 * 1024, nt_req);
  const int64_t nb = ceil_div(p.OH, R), items = p.N * nb;
  const int64_t Rb_max = (R - 1) * p.sH + (p.KH - 1) * p.dH + 1;
  const bool direct_dy = p.layout == Layout::nhwc && OCs == OCg;
  const bool want_nhwc = G == 1 && taps > 1;
  const int64_t partial_sz = G * taps * ICg * OCs + OCb;
  const int64_t band_sz = band_elems(p.IC, Rb_max, Wb), dyb_sz = direct_dy ? 0 : R * p.OW * OCb;
  const int64_t per_thread = round_up(partial_sz + band_sz + dyb_sz + kMaxNP * kMaxNV * S, 16);
  const double macs = double(p.N) * p.OH * p.OW * p.OC * ICg * taps;
  const int nt = macs < 65536.0 ? 1 : nt_req;
  AlignedBuffer scratch_mem = AlignedBuffer::of<T>(per_thread * nt);
  T* scratch = scratch_mem.as<T>();

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    T* partial = scratch + tid * per_thread;  // [g][kh][kw][ic][OCs], then bias [OCb]
    T* dbp = partial + G * taps * ICg * OCs;
    T* band_buf = partial + partial_sz;
    T* dyb = band_buf + band_sz;
    T* dummy = dyb + dyb_sz;
    fill_zero(partial, partial_sz);
    std::vector<double> dbd(db != nullptr ? OCb : 0, 0.0);
    int64_t i0, i1;
    split_range(items, tid, nth, i0, i1);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nb, oh0 = (item % nb) * R, rows = min64(R, p.OH - oh0);
      const int64_t Rb = (rows - 1) * p.sH + (p.KH - 1) * p.dH + 1, npix = rows * p.OW;
      const Band<T> band = make_band(x + n * p.IC * p.H * p.W, p.layout, p.IC, p.H, p.W, oh0 * p.sH - p.pH, Rb,
                                     -p.pW, Wb, want_nhwc, band_buf);
      // grad_output of the band as (pixels x OCb): channel oc of group g at g*OCs + oc
      const T* dyband;
      int64_t dps;
      if (direct_dy) {
        dyband = dy + (n * p.OH + oh0) * p.OW * p.OC;
        dps = p.OC;
      } else {
        for (int64_t g = 0; g < G; ++g) {
          if (p.layout == Layout::nchw) {
            transpose_2d(dy + ((n * p.OC + g * OCg) * p.OH + oh0) * p.OW, p.OH * p.OW, dyb + g * OCs, OCb, OCg, npix);
          } else {
            const T* s = dy + (n * p.OH + oh0) * p.OW * p.OC + g * OCg;
            for (int64_t q = 0; q < npix; ++q)
              for (int64_t oc = 0; oc < OCg; ++oc) dyb[q * OCb + g * OCs + oc] = s[q * p.OC + oc];
          }
          if (OCs > OCg)
            for (int64_t q = 0; q < npix; ++q) fill_zero(dyb + q * OCb + g * OCs + OCg, OCs - OCg);
        }
        dyband = dyb;
        dps = OCb;
      }
      if (db != nullptr) {  // OCb == OC when direct_dy; summed in double, as a long float sum drifts
        for (int64_t q = 0; q < npix; ++q) {
          const T* s = dyband + q * dps;
          for (int64_t k = 0; k < OCb; ++k) dbd[k] += double(s[k]);
        }
      }
      const bool merged = band.chs == 1 && band.cs == ICg && p.dW == 1;
      const int64_t ntap_groups = merged ? p.KH : taps, M = merged ? p.KW * ICg : ICg;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t t = 0; t < ntap_groups; ++t) {
          const int64_t kh = merged ? t : t / p.KW, kw = merged ? 0 : t % p.KW;
          for (int64_t ob = 0; ob < nvec; ob += kMaxNV) {
            const int nv = static_cast<int>(min64(kMaxNV, nvec - ob));
            WeightBlock<T> b;
            b.x = band.base + g * ICg * band.chs + kh * p.dH * band.rs + kw * p.dW * band.cs;
            b.rows = rows;
            b.cols = p.OW;
            b.xrs = p.sH * band.rs;
            b.xcs = p.sW * band.cs;
            b.chs = band.chs;
            b.dy = dyband + (direct_dy ? g * OCg : g * OCs) + ob * S;
            b.drs = p.OW * dps;
            b.dcs = dps;
            b.out = partial + ((g * taps + kh * p.KW + kw) * ICg) * OCs + ob * S;
            b.out_ld = OCs;
            b.M = M;
            b.dummy = dummy;
            weight_block<T>(nv, b);
          }
        }
      }
    }
    for (int64_t k = 0; k < int64_t(dbd.size()); ++k) dbp[k] = T(dbd[k]);
#pragma omp barrier
    // grad_weight[oc][ic][t] = sum over threads of partial[g][t][ic][oc - g*OCg]
    int64_t o0, o1;
    split_range(p.OC, tid, nth, o0, o1);
    for (int64_t oc = o0; oc < o1; ++oc) {
      const int64_t g = oc / OCg, ocg = oc - g * OCg;
      for (int64_t ic = 0; ic < ICg; ++ic)
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t idx = ((g * taps + t) * ICg + ic) * OCs + ocg;
          dw[(oc * ICg + ic) * taps + t] = sum_parts(scratch + idx, nth, per_thread);
        }
      if (db != nullptr) db[oc] = sum_parts(scratch + G * taps * ICg * OCs + g * OCs + ocg, nth, per_thread);
    }
  }
}

}  // namespace

void conv2d_direct_backward_weight(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward_weight<T>(p); }); }

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
