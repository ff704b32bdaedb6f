// Direct convolution on the CPU: forward and gradient w.r.t. the input, any kernel size, stride,
// padding, dilation and groups, NCHW and NHWC. Compiled once per ISA path (kernels/cpu/simd.h);
// kernels/cpu/conv/conv.cpp dispatches here (depthwise convolutions go to
// conv_depthwise_{nchw,nhwc}_kernel.cpp, 1x1 stride-1 NCHW ones to the GEMM core, conv_gemm.cpp).
//
// The work is cut into bands: R output rows of one image. A thread takes whole bands, copies the
// input rows a band reads into a zero-padded scratch band (NHWC; an NCHW image is transposed on
// the way) or reads the image in place when no padding is touched, and computes the band's
// outputs in register tiles:
//
//   tile (NP pixels x NV vectors of output channels):
//     acc[j][v] = bias[v] + sum_{tap t} sum_{c < L} w_t[c][v] * in_j[off_t + c * chs]
//
// The input scalar is broadcast and multiplied with NV weight vectors (output channels are the
// vector dimension, as in oneDNN's direct convolution), so no im2col buffer exists: the tile
// reads the band directly, pixel by pixel through its own pointer, and weights are packed once
// per call as [group][kh][kw][ic][oc padded to the vector width]. With NHWC data, groups = 1 and
// unit column dilation, the kw taps of one row are contiguous and merge with ic into one
// reduction of length KW*IC (fewer, longer loops). AVX-512 fp32: NV = 4 (64 channels) x NP = 6
// pixels = 24 accumulators; each reduction step loads 4 weight vectors and 6 scalars for 24 FMAs.
//
// Outputs in NHWC go straight from the tile to the output when the channel count per group is a
// multiple of the vector width; otherwise (NCHW, or a channel tail) the tile writes a per-thread
// NHWC band buffer that is transposed / copied out while it is still in cache.
//
// With few output channels per group (<= 8: an RGB stem's input gradient) a second tile
// vectorises the reduction instead and sums the lanes at the end (see reduce_tile).
//
// The gradient w.r.t. the input is the same tile run over grad_output: for stride s the input
// pixels split into s_h x s_w phases (ih + pH ≡ rh mod sH, ...), and within a phase the taps that
// reach a pixel are fixed (kh*dH ≡ rh mod sH) and consecutive pixels read consecutive
// grad_output positions, so each phase is a small stride-1 convolution with its own taps and
// nothing is multiplied by inserted zeros.
#include <omp.h>

#include "bigmodel/conv.h"
#include "cpu/conv/conv_common.h"
#include "cpu/simd.h"
#include "cpu/transpose.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// out_j[v*S + i] = (init ? init[v*S + i] : 0) + sum_{t < ntaps} sum_{c < L} w[t][c*wld + v*S + i] * in_j[off[t] + c*chs]
// for pixels j < NP and lanes v*S + i < NV*S.
template <typename T, int NV, int NP, bool kUnitC>
BM_INLINE void direct_tile(const T* const* in, const int64_t* off, const T* const* w, int ntaps, int64_t L,
                           int64_t chs, int64_t wld, T* const* out, const T* init) {
  using V = Vec<T>;
  constexpr int S = V::size;
  V acc[NP][NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const V b = init != nullptr ? V::load(init + v * S) : V::zero();
#pragma GCC unroll 16
    for (int j = 0; j < NP; ++j) acc[j][v] = b;
  }
  for (int t = 0; t < ntaps; ++t) {
    const T* p[NP];
#pragma GCC unroll 16
    for (int j = 0; j < NP; ++j) p[j] = in[j] + off[t];
    const T* wt = w[t];
    for (int64_t c = 0; c < L; ++c) {
      V wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wv[v] = V::load(wt + v * S);
      wt += wld;
#pragma GCC unroll 16
      for (int j = 0; j < NP; ++j) {
        const V b = V::broadcast(kUnitC ? p[j][c] : p[j][c * chs]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[j][v] = V::fma(wv[v], b, acc[j][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[j][v].store(out[j] + v * S);
}

// What one block of tiles reads: the taps (input offset and weight pointer at the block's first
// output channel), the reduction length L per tap, the input channel stride and weight row stride.
template <typename T>
struct TapSet {
  const int64_t* off;
  const T* const* w;
  int ntaps;
  int64_t L, chs, wld;
};

// All tiles of NV vectors over pixels [0, npix). pixel(q, in, out) gives pixel q's input pointer
// (before the tap offset) and output pointer (at the block's first channel). Pixels past npix in
// the last tile recompute pixel 0 into `dummy`, so every tile is full.
template <typename T, int NV, typename PixelFn>
void run_tiles(int64_t npix, const PixelFn& pixel, const TapSet<T>& taps, const T* init, T* dummy) {
  constexpr int NP = np_for(NV);
  const T* in[NP];
  T* out[NP];
  for (int64_t q0 = 0; q0 < npix; q0 += NP) {
    for (int j = 0; j < NP; ++j) {
      if (q0 + j < npix) {
        pixel(q0 + j, in[j], out[j]);
      } else {
        in[j] = in[0];
        out[j] = dummy;
      }
    }
    if (taps.chs == 1)
      direct_tile<T, NV, NP, true>(in, taps.off, taps.w, taps.ntaps, taps.L, 1, taps.wld, out, init);
    else
      direct_tile<T, NV, NP, false>(in, taps.off, taps.w, taps.ntaps, taps.L, taps.chs, taps.wld, out, init);
  }
}

template <typename T, typename PixelFn>
void run_block(int nv, int64_t npix, const PixelFn& pixel, const TapSet<T>& taps, const T* init, T* dummy) {
  switch (nv) {
    case 1: return run_tiles<T, 1>(npix, pixel, taps, init, dummy);
    case 2: return run_tiles<T, 2>(npix, pixel, taps, init, dummy);
    default: break;
  }
  if constexpr (kMaxNV >= 4) {
    if (nv == 3) return run_tiles<T, 3>(npix, pixel, taps, init, dummy);
    return run_tiles<T, 4>(npix, pixel, taps, init, dummy);
  }
}

// ---- few output channels ----------------------------------------------------------------------
// With fewer output channels per group than a vector has lanes (the grad-input of an RGB stem:
// 3 of 16), the tile above wastes most lanes. This tile vectorises the reduction instead (input
// channels of an NHWC band, contiguous per pixel) and sums the lanes at the end:
//
//   out_j[o] = init[o] + sum_t sum_{c < L} w_t[o*wos + c] * in_j[off_t + c]   for o < NO, j < NP
#if defined(BIGMODEL_BUILD_AVX512)
constexpr int np_reduce(int no) { return no <= 3 ? 8 : no == 4 ? 6 : no <= 6 ? 4 : 3; }
#else
constexpr int np_reduce(int no) { return no == 1 ? 8 : no == 2 ? 6 : no == 3 ? 4 : no == 4 ? 3 : no <= 6 ? 2 : 1; }
#endif
constexpr int kMaxReduceOut = 8;

template <typename T, int NO, int NP>
BM_INLINE void reduce_tile(const T* const* in, const int64_t* off, const T* const* w, int ntaps, int64_t L,
                           int64_t wos, T* const* out, const T* init) {
  using V = Vec<T>;
  constexpr int S = V::size;
  V acc[NP][NO];
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j)
#pragma GCC unroll 8
    for (int o = 0; o < NO; ++o) acc[j][o] = V::zero();
  const int64_t Lf = L - L % S;
  const int tail = static_cast<int>(L % S);
  for (int t = 0; t < ntaps; ++t) {
    const T* p[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) p[j] = in[j] + off[t];
    const T* wt = w[t];
    for (int64_t c = 0; c < Lf; c += S) {
      V wv[NO];
#pragma GCC unroll 8
      for (int o = 0; o < NO; ++o) wv[o] = V::load(wt + o * wos + c);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        const V x = V::load(p[j] + c);
#pragma GCC unroll 8
        for (int o = 0; o < NO; ++o) acc[j][o] = V::fma(x, wv[o], acc[j][o]);
      }
    }
    if (tail > 0) {  // lanes >= tail load as zero on both sides
      V wv[NO];
      for (int o = 0; o < NO; ++o) wv[o] = V::load(wt + o * wos + Lf, tail);
      for (int j = 0; j < NP; ++j) {
        const V x = V::load(p[j] + Lf, tail);
        for (int o = 0; o < NO; ++o) acc[j][o] = V::fma(x, wv[o], acc[j][o]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j)
#pragma GCC unroll 8
    for (int o = 0; o < NO; ++o) out[j][o] = reduce_add(acc[j][o]) + (init != nullptr ? init[o] : T(0));
}

template <typename T, int NO, typename PixelFn>
void run_reduce_tiles(int64_t npix, const PixelFn& pixel, const TapSet<T>& taps, const T* init, T* dummy) {
  constexpr int NP = np_reduce(NO);
  const T* in[NP];
  T* out[NP];
  for (int64_t q0 = 0; q0 < npix; q0 += NP) {
    for (int j = 0; j < NP; ++j) {
      if (q0 + j < npix) {
        pixel(q0 + j, in[j], out[j]);
      } else {
        in[j] = in[0];
        out[j] = dummy;
      }
    }
    reduce_tile<T, NO, NP>(in, taps.off, taps.w, taps.ntaps, taps.L, taps.wld, out, init);
  }
}

// All `no` (<= kMaxReduceOut) output channels of pixels [0, npix); taps.wld is the weight stride
// between output channels.
template <typename T, typename PixelFn>
void run_reduce(int no, int64_t npix, const PixelFn& pixel, const TapSet<T>& taps, const T* init, T* dummy) {
  switch (no) {
    case 1: return run_reduce_tiles<T, 1>(npix, pixel, taps, init, dummy);
    case 2: return run_reduce_tiles<T, 2>(npix, pixel, taps, init, dummy);
    case 3: return run_reduce_tiles<T, 3>(npix, pixel, taps, init, dummy);
    case 4: return run_reduce_tiles<T, 4>(npix, pixel, taps, init, dummy);
    case 5: return run_reduce_tiles<T, 5>(npix, pixel, taps, init, dummy);
    case 6: return run_reduce_tiles<T, 6>(npix, pixel, taps, init, dummy);
    case 7: return run_reduce_tiles<T, 7>(npix, pixel, taps, init, dummy);
    default: return run_reduce_tiles<T, 8>(npix, pixel, taps, init, dummy);
  }
}

// Whether a pass with `out_per_group` output channels should use the reduction tile: only on the
// vector paths, with channel-contiguous (NHWC) bands, and when most lanes would idle otherwise.
template <typename T>
constexpr bool use_reduce_tile(int64_t out_per_group, bool nhwc_band) {
  return Vec<T>::size >= 8 && out_per_group <= kMaxReduceOut && nhwc_band;
}

// Copies an NHWC band buffer (pixels x groups*CS, channel c of group g at g*CS + c) into the
// output rows it covers: out is the first pixel of those rows in `layout`, with `plane` = H*W
// (NCHW) and Ctot = groups * Cg channels.
template <typename T>
void write_band(const T* buf, int64_t npix, int64_t groups, int64_t Cg, int64_t CS, Layout layout, T* out,
                int64_t plane, int64_t Ctot) {
  const int64_t ld = groups * CS;
  if (layout == Layout::nchw) {
    for (int64_t g = 0; g < groups; ++g) transpose_2d(buf + g * CS, ld, out + g * Cg * plane, plane, npix, Cg);
    return;
  }
  for (int64_t q = 0; q < npix; ++q)
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t c = 0; c < Cg; ++c) out[q * Ctot + g * Cg + c] = buf[q * ld + g * CS + c];
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

template <typename T>
void forward(const Conv2dParams& p) {
  constexpr int S = Vec<T>::size;
  const int64_t G = p.groups, ICg = p.IC / G, OCg = p.OC / G;
  const int64_t OCs = round_up(OCg, S), OCb = G * OCs, nvec = OCs / S;
  const int64_t taps = p.KH * p.KW;
  const T* x = static_cast<const T*>(p.input);
  const T* wsrc = static_cast<const T*>(p.weight);
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.output);

  // NHWC bands let kw merge into the reduction; a 1x1 kernel gains nothing from them
  const bool want_nhwc = G == 1 && taps > 1;
  const bool few_out = use_reduce_tile<T>(OCg, p.layout == Layout::nhwc || want_nhwc);
  // Main tile: wp[g][kh][kw][ic][OCs], zero past OCg. Few-output tile: wp[g][kh][oc][kw][ic].
  // bp[g][OCs]: the bias, zero past OCg.
  AlignedBuffer wp_mem = AlignedBuffer::of<T>(G * taps * ICg * OCs);
  T* wp = wp_mem.as<T>();
  AlignedBuffer bp_mem = AlignedBuffer::of<T>(OCb);
  T* bp = bp_mem.as<T>();
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t ic = 0; ic < ICg; ++ic) {
        if (few_out) {
          const int64_t kh = t / p.KW, kw = t % p.KW;
          for (int64_t oc = 0; oc < OCg; ++oc)
            wp[(((g * p.KH + kh) * OCg + oc) * p.KW + kw) * ICg + ic] = wsrc[((g * OCg + oc) * ICg + ic) * taps + t];
          continue;
        }
        T* d = wp + ((g * taps + t) * ICg + ic) * OCs;
        for (int64_t oc = 0; oc < OCg; ++oc) d[oc] = wsrc[((g * OCg + oc) * ICg + ic) * taps + t];
        fill_zero(d + OCg, OCs - OCg);
      }
    for (int64_t oc = 0; oc < OCs; ++oc) bp[g * OCs + oc] = bias != nullptr && oc < OCg ? bias[g * OCg + oc] : T(0);
  }

  const int64_t Wb = (p.OW - 1) * p.sW + (p.KW - 1) * p.dW + 1;  // band columns: iw in [-pW, -pW + Wb)
  const int nt_req = p.num_threads < 1 ? 1 : p.num_threads;
  const int64_t R = band_rows(p.N, p.OH, p.sH * Wb * p.IC * int64_t(sizeof(T)) + p.OW * OCb * int64_t(sizeof(T)),
                              512 * 1024, nt_req);
  const int64_t nb = ceil_div(p.OH, R), items = p.N * nb;
  const int64_t Rb_max = (R - 1) * p.sH + (p.KH - 1) * p.dH + 1;
  const bool direct_out = p.layout == Layout::nhwc && (OCs == OCg || few_out);
  const int64_t band_sz = band_elems(p.IC, Rb_max, Wb), obuf_sz = direct_out ? 0 : R * p.OW * OCb;
  const int64_t per_thread = round_up(band_sz + obuf_sz + kMaxNV * S, 16);
  const double macs = double(p.N) * p.OH * p.OW * p.OC * ICg * taps;
  const int nt = macs < 65536.0 ? 1 : nt_req;
  const ThreadScratch<T> ts(per_thread, taps, taps, nt);
  T* const scratch = ts.data;
  int64_t* const offs = ts.offs;
  const T** const wptrs = ts.ptrs;

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    T* band_buf = scratch + tid * per_thread;
    T* obuf = band_buf + band_sz;
    T* dummy = obuf + obuf_sz;
    int64_t* off = offs + tid * taps;
    const T** wt = wptrs + tid * taps;
    int64_t i0, i1;
    split_range(items, tid, nth, i0, i1);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nb, oh0 = (item % nb) * R, rows = min64(R, p.OH - oh0);
      const int64_t Rb = (rows - 1) * p.sH + (p.KH - 1) * p.dH + 1;
      const Band<T> band = make_band(x + n * p.IC * p.H * p.W, p.layout, p.IC, p.H, p.W, oh0 * p.sH - p.pH, Rb,
                                     -p.pW, Wb, want_nhwc, band_buf);
      const int64_t npix = rows * p.OW;
      T* ybase = direct_out ? y + (n * p.OH + oh0) * p.OW * p.OC : obuf;
      const int64_t yps = direct_out ? p.OC : OCb, ygs = direct_out ? OCg : OCs;
      // kw merges into the reduction when a pixel's (kw, ic) values are contiguous
      const bool merged = band.chs == 1 && band.cs == ICg && p.dW == 1;
      TapSet<T> ts;
      ts.off = off;
      ts.w = wt;
      ts.ntaps = static_cast<int>(merged ? p.KH : taps);
      ts.L = merged ? p.KW * ICg : ICg;
      ts.chs = band.chs;
      ts.wld = OCs;
      for (int64_t g = 0; g < G; ++g) {
        const T* in_g = band.base + g * ICg * band.chs;
        if (few_out) {  // band.chs == 1 here
          for (int t = 0; t < ts.ntaps; ++t) {
            const int64_t kh = merged ? t : t / p.KW, kw = merged ? 0 : t % p.KW;
            off[t] = kh * p.dH * band.rs + kw * p.dW * band.cs;
            wt[t] = wp + ((g * p.KH + kh) * OCg * p.KW + kw) * ICg;
          }
          TapSet<T> tr = ts;
          tr.wld = p.KW * ICg;
          T* yg = ybase + g * ygs;
          auto pixel = [&](int64_t q, const T*& in, T*& out) {
            const int64_t r = q / p.OW, c = q - r * p.OW;
            in = in_g + r * p.sH * band.rs + c * p.sW * band.cs;
            out = yg + q * yps;
          };
          run_reduce<T>(static_cast<int>(OCg), npix, pixel, tr, bias != nullptr ? bias + g * OCg : nullptr, dummy);
          continue;
        }
        for (int64_t ob = 0; ob < nvec; ob += kMaxNV) {
          const int nv = static_cast<int>(min64(kMaxNV, nvec - ob));
          for (int t = 0; t < ts.ntaps; ++t) {
            const int64_t kh = merged ? t : t / p.KW, kw = merged ? 0 : t % p.KW;
            off[t] = kh * p.dH * band.rs + kw * p.dW * band.cs;
            wt[t] = wp + ((g * taps + kh * p.KW + kw) * ICg) * OCs + ob * S;
          }
          T* yg = ybase + g * ygs + ob * S;
          auto pixel = [&](int64_t q, const T*& in, T*& out) {
            const int64_t r = q / p.OW, c = q - r * p.OW;
            in = in_g + r * p.sH * band.rs + c * p.sW * band.cs;
            out = yg + q * yps;
          };
          run_block<T>(nv, npix, pixel, ts, bp + g * OCs + ob * S, dummy);
        }
      }
      if (!direct_out)
        write_band(obuf, npix, G, OCg, OCs, p.layout,
                   p.layout == Layout::nchw ? y + n * p.OC * p.OH * p.OW + oh0 * p.OW
                                            : y + (n * p.OH + oh0) * p.OW * p.OC,
                   p.OH * p.OW, p.OC);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Gradient w.r.t. the input
// ---------------------------------------------------------------------------------------------
//
//   grad_input[n, g*ICg + ic, ih, iw] = sum_{oc < OCg, kh, kw} grad_output[n, g*OCg + oc, oh, ow] * w[g*OCg + oc, ic, kh, kw]
//   over oh*sH = ih + pH - kh*dH and ow*sW = iw + pW - kw*dW with 0 <= oh < OH, 0 <= ow < OW.

template <typename T>
void backward_input(const Conv2dParams& p) {
  constexpr int S = Vec<T>::size;
  const int64_t G = p.groups, ICg = p.IC / G, OCg = p.OC / G;
  const int64_t ICs = round_up(ICg, S), ICb = G * ICs, nvec = ICs / S;
  const int64_t taps = p.KH * p.KW;
  const T* dy = static_cast<const T*>(p.grad_output);
  const T* wsrc = static_cast<const T*>(p.weight);
  T* dx = static_cast<T*>(p.grad_input);

  const bool want_nhwc = G == 1 && (taps > 1 || p.sH > 1 || p.sW > 1);
  const bool few_out = use_reduce_tile<T>(ICg, p.layout == Layout::nhwc || want_nhwc);
  // Main tile: wd[g][kh][KW-1-kw][oc][ICs]: kw reversed, so that for unit column stride and
  // dilation the taps of one row read grad_output columns in increasing order and merge with oc.
  // Few-output tile: wd[g][kh][ic][KW-1-kw][oc], the same reduction order with ic outside.
  AlignedBuffer wd_mem = AlignedBuffer::of<T>(G * taps * OCg * ICs);
  T* wd = wd_mem.as<T>();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t kh = 0; kh < p.KH; ++kh)
      for (int64_t kw = 0; kw < p.KW; ++kw)
        for (int64_t oc = 0; oc < OCg; ++oc) {
          const T* s = wsrc + ((g * OCg + oc) * ICg * p.KH + kh) * p.KW + kw;  // ic at s[ic * taps]
          if (few_out) {
            for (int64_t ic = 0; ic < ICg; ++ic)
              wd[(((g * p.KH + kh) * ICg + ic) * p.KW + (p.KW - 1 - kw)) * OCg + oc] = s[ic * taps];
            continue;
          }
          T* d = wd + (((g * p.KH + kh) * p.KW + (p.KW - 1 - kw)) * OCg + oc) * ICs;
          for (int64_t ic = 0; ic < ICg; ++ic) d[ic] = s[ic * taps];
          fill_zero(d + ICg, ICs - ICg);
        }

  // grad_output columns read by input columns [0, W): ow in [owb0, owb0 + Wb)
  const int64_t owb0 = floor_div(p.pW - (p.KW - 1) * p.dW, p.sW);
  const int64_t Wb = floor_div(p.W - 1 + p.pW, p.sW) - owb0 + 1;
  const int nt_req = p.num_threads < 1 ? 1 : p.num_threads;
  const int64_t R = band_rows(p.N, p.H, ceil_div(Wb * p.OC * int64_t(sizeof(T)), p.sH) + p.W * ICb * int64_t(sizeof(T)),
                              512 * 1024, nt_req);
  const int64_t nb = ceil_div(p.H, R), items = p.N * nb;
  // grad_output rows read by input rows [ih0, ih1)
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
  const bool direct_out = p.layout == Layout::nhwc && (ICs == ICg || few_out);
  const int64_t band_sz = band_elems(p.OC, Rb_max, Wb), obuf_sz = direct_out ? 0 : R * p.W * ICb;
  const int64_t per_thread = round_up(band_sz + obuf_sz + kMaxNV * S, 16);
  const double macs = double(p.N) * p.OH * p.OW * p.OC * ICg * taps;
  const int nt = macs < 65536.0 ? 1 : nt_req;
  const ThreadScratch<T> ts(per_thread, taps, taps, nt);
  T* const scratch = ts.data;
  int64_t* const offs = ts.offs;
  const T** const wptrs = ts.ptrs;

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    T* band_buf = scratch + tid * per_thread;
    T* obuf = band_buf + band_sz;
    T* dummy = obuf + obuf_sz;
    int64_t* off = offs + tid * taps;
    const T** wt = wptrs + tid * taps;
    int64_t i0, i1;
    split_range(items, tid, nth, i0, i1);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nb, ih0 = (item % nb) * R, ih1 = min64(p.H, ih0 + R);
      int64_t ohb0, Rb;
      oh_range(ih0, ih1, ohb0, Rb);
      const Band<T> band =
          make_band(dy + n * p.OC * p.OH * p.OW, p.layout, p.OC, p.OH, p.OW, ohb0, Rb, owb0, Wb, want_nhwc, band_buf);
      T* xbase = direct_out ? dx + (n * p.H + ih0) * p.W * p.IC : obuf;
      const int64_t xps = direct_out ? p.IC : ICb, xgs = direct_out ? ICg : ICs;
      const bool merged = band.chs == 1 && band.cs == OCg && p.sW == 1 && p.dW == 1;
      for (int64_t rh = 0; rh < p.sH; ++rh) {
        const int64_t ihf = ih0 + pos_mod(rh - (ih0 + p.pH), p.sH);
        const int64_t nh = ihf < ih1 ? ceil_div(ih1 - ihf, p.sH) : 0;
        for (int64_t rw = 0; rw < p.sW; ++rw) {
          const int64_t iwf = pos_mod(rw - p.pW, p.sW);
          const int64_t nw = iwf < p.W ? ceil_div(p.W - iwf, p.sW) : 0;
          if (nh == 0 || nw == 0) continue;
          // phase pixel (i, j): ih = ihf + i*sH, iw = iwf + j*sW; it reads band row
          // (ih + pH - rh)/sH - ohb0 and column (iw + pW - rw)/sW - owb0 before the tap offset.
          const int64_t r0 = (ihf + p.pH - rh) / p.sH - ohb0, c0 = (iwf + p.pW - rw) / p.sW - owb0;
          for (int64_t g = 0; g < G; ++g) {
            const T* in_g = band.base + g * OCg * band.chs;
            if (few_out) {  // band.chs == 1 here
              int ntaps = 0;
              for (int64_t kh = 0; kh < p.KH; ++kh) {
                if ((kh * p.dH) % p.sH != rh) continue;
                const int64_t tr = (kh * p.dH - rh) / p.sH;
                const T* wk = wd + (g * p.KH + kh) * ICg * p.KW * OCg;
                if (merged) {
                  off[ntaps] = -tr * band.rs - (p.KW - 1) * band.cs;
                  wt[ntaps++] = wk;
                  continue;
                }
                for (int64_t kw = 0; kw < p.KW; ++kw) {
                  if ((kw * p.dW) % p.sW != rw) continue;
                  off[ntaps] = -tr * band.rs - ((kw * p.dW - rw) / p.sW) * band.cs;
                  wt[ntaps++] = wk + (p.KW - 1 - kw) * OCg;
                }
              }
              TapSet<T> ts{off, wt, ntaps, merged ? p.KW * OCg : OCg, 1, p.KW * OCg};
              T* xg = xbase + g * xgs;
              auto pixel = [&](int64_t q, const T*& in, T*& out) {
                const int64_t i = q / nw, j = q - i * nw;
                in = in_g + (r0 + i) * band.rs + (c0 + j) * band.cs;
                out = xg + ((ihf - ih0 + i * p.sH) * p.W + iwf + j * p.sW) * xps;
              };
              run_reduce<T>(static_cast<int>(ICg), nh * nw, pixel, ts, nullptr, dummy);
              continue;
            }
            for (int64_t ob = 0; ob < nvec; ob += kMaxNV) {
              const int nv = static_cast<int>(min64(kMaxNV, nvec - ob));
              int ntaps = 0;
              for (int64_t kh = 0; kh < p.KH; ++kh) {
                if ((kh * p.dH) % p.sH != rh) continue;
                const int64_t tr = (kh * p.dH - rh) / p.sH;
                if (merged) {  // all kw, reversed: columns c - (KW-1) .. c, contiguous with oc
                  off[ntaps] = -tr * band.rs - (p.KW - 1) * band.cs;
                  wt[ntaps++] = wd + ((g * p.KH + kh) * p.KW) * OCg * ICs + ob * S;
                  continue;
                }
                for (int64_t kw = 0; kw < p.KW; ++kw) {
                  if ((kw * p.dW) % p.sW != rw) continue;
                  const int64_t tc = (kw * p.dW - rw) / p.sW;
                  off[ntaps] = -tr * band.rs - tc * band.cs;
                  wt[ntaps++] = wd + ((g * p.KH + kh) * p.KW + (p.KW - 1 - kw)) * OCg * ICs + ob * S;
                }
              }
              TapSet<T> ts{off, wt, ntaps, merged ? p.KW * OCg : OCg, band.chs, ICs};
              T* xg = xbase + g * xgs + ob * S;
              auto pixel = [&](int64_t q, const T*& in, T*& out) {
                const int64_t i = q / nw, j = q - i * nw;
                in = in_g + (r0 + i) * band.rs + (c0 + j) * band.cs;
                out = xg + ((ihf - ih0 + i * p.sH) * p.W + iwf + j * p.sW) * xps;
              };
              run_block<T>(nv, nh * nw, pixel, ts, nullptr, dummy);
            }
          }
        }
      }
      if (!direct_out)
        write_band(obuf, (ih1 - ih0) * p.W, G, ICg, ICs, p.layout,
                   p.layout == Layout::nchw ? dx + n * p.IC * p.H * p.W + ih0 * p.W : dx + (n * p.H + ih0) * p.W * p.IC,
                   p.H * p.W, p.IC);
    }
  }
}

}  // namespace

void conv2d_direct_forward(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { forward<T>(p); }); }

void conv2d_direct_backward_input(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward_input<T>(p); }); }

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
