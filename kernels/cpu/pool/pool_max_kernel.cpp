// 2-D max pooling on the CPU, forward and backward, NCHW and NHWC. Compiled once per ISA path
// (see kernels/cpu/simd.h); kernels/cpu/pool/pool.cpp dispatches. Average pooling is in
// pool_avg_kernel.cpp, the shared pieces in pool_common.h.
//
// NCHW: one (n, c) plane at a time. Output columns whose whole window row lies inside the input
// ("interior" columns) are done Vec::size at a time: each tap is a (strided) vector load, so a
// window costs kH*kW vector ops for size outputs. Columns that touch the padding, and the
// generic path, go through a scalar loop that follows torch's definition literally.
// NHWC: vectorised along C; the window walk is scalar and shared by all channel lanes.
//
// The backward recomputes each window's argmax from the input (the same visit order and NaN
// rule as the forward, so the same tap wins) instead of reading stored int64 indices: the
// forward then writes only the output, and the backward reads 1x input instead of 2x output.
// Windows that overlap make the backward a scatter-add, so a plane (NCHW) or an image / channel
// block (NHWC) is owned by one thread: no atomics, deterministic sums.
#include <omp.h>

#include "cpu/pool/pool_common.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// ---------------------------------------------------------------------------------------------
// Max pooling, NCHW
// ---------------------------------------------------------------------------------------------

// Scalar max of one window; returns the value and writes its flat index (ih * W + iw).
template <typename T>
BM_INLINE T max_window_scalar(const T* plane, const Pool2dParams& p, const MaxSpan& h, const MaxSpan& w,
                              int64_t& index) {
  T best = neg_inf<T>();
  index = (h.start + h.t_begin * p.dH) * p.W + (w.start + w.t_begin * p.dW);
  for (int64_t th = h.t_begin; th < h.t_end; ++th) {
    const int64_t ih = h.start + th * p.dH;
    for (int64_t tw = w.t_begin; tw < w.t_end; ++tw) {
      const int64_t iw = w.start + tw * p.dW;
      const T v = plane[ih * p.W + iw];
      if (v > best || v != v) {
        best = v;
        index = ih * p.W + iw;
      }
    }
  }
  return best;
}

// Max over the windows of `n` interior outputs starting at column ow. `tap` receives the
// winning tap number th*kW + tw of each lane (as T; exact while kH*kW < 2^24) when kTrack.
template <typename T, bool kTrack>
BM_INLINE Vec<T> max_chunk(const T* plane, const Pool2dParams& p, const MaxSpan& h, int64_t ow, int n,
                           Vec<T>& tap) {
  using V = Vec<T>;
  const int64_t base = ow * p.sW - p.pW;
  V best = V::broadcast(neg_inf<T>());
  if (kTrack) tap = V::broadcast(static_cast<T>(h.t_begin * p.kW));
  bool first = true;
  for (int64_t th = h.t_begin; th < h.t_end; ++th) {
    const T* row = plane + (h.start + th * p.dH) * p.W;
    for (int64_t tw = 0; tw < p.kW; ++tw) {
      const int64_t col = base + tw * p.dW;
      const V v = load_tap(row + col, p.sW, n, p.W - col);
      if (first) {  // the first tap always wins (torch starts from -inf with "> or NaN")
        best = v;
        first = false;
        continue;
      }
      const auto m = V::mask_or(V::gt(v, best), V::isnan(v));
      best = V::select(m, v, best);
      if (kTrack) tap = V::select(m, V::broadcast(static_cast<T>(th * p.kW + tw)), tap);
    }
  }
  return best;
}

template <typename T>
BM_INLINE int64_t tap_to_index(const Pool2dParams& p, const MaxSpan& h, int64_t ow, int64_t tap) {
  const int64_t th = tap / p.kW, tw = tap - th * p.kW;
  return (h.start + th * p.dH) * p.W + (ow * p.sW - p.pW + tw * p.dW);
}

template <typename T, bool kTrack>
void max_pool_nchw_row(const T* plane, T* out_row, int64_t* idx_row, const Pool2dParams& p, int64_t oh,
                       int64_t lo, int64_t hi) {
  using V = Vec<T>;
  const MaxSpan h = max_span(oh, p.kH, p.sH, p.pH, p.dH, p.H);
  auto scalar = [&](int64_t ow) {
    const MaxSpan w = max_span(ow, p.kW, p.sW, p.pW, p.dW, p.W);
    int64_t index;
    out_row[ow] = max_window_scalar(plane, p, h, w, index);
    if (kTrack) idx_row[ow] = index;
  };
  for (int64_t ow = 0; ow < lo; ++ow) scalar(ow);
  if (h.t_begin < h.t_end) {
    for (int64_t ow = lo; ow < hi; ow += V::size) {
      const int n = static_cast<int>(min64(V::size, hi - ow));
      V tap;
      const V best = max_chunk<T, kTrack>(plane, p, h, ow, n, tap);
      best.store(out_row + ow, n);
      if (kTrack) {
        T taps[V::size];
        tap.store(taps);
        for (int i = 0; i < n; ++i) idx_row[ow + i] = tap_to_index<T>(p, h, ow + i, static_cast<int64_t>(taps[i]));
      }
    }
  } else {
    for (int64_t ow = lo; ow < hi; ++ow) scalar(ow);
  }
  for (int64_t ow = hi; ow < p.OW; ++ow) scalar(ow);
}

template <typename T>
void max_pool_nchw_forward(const Pool2dParams& p) {
  const T* in = static_cast<const T*>(p.input);
  T* out = static_cast<T*>(p.output);
  int64_t lo, hi;
  interior_columns(p, lo, hi);
  if (p.kH * p.kW >= (int64_t(1) << 24)) lo = hi = 0;  // tap ids must stay exact in T
  const int64_t rows = p.N * p.C * p.OH;
  const bool par = p.num_threads > 1 && rows * p.OW * p.kH * p.kW > 32768;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t plane = r / p.OH, oh = r - plane * p.OH;
    const T* src = in + plane * p.H * p.W;
    if (p.indices)
      max_pool_nchw_row<T, true>(src, out + r * p.OW, p.indices + r * p.OW, p, oh, lo, hi);
    else
      max_pool_nchw_row<T, false>(src, out + r * p.OW, nullptr, p, oh, lo, hi);
  }
}

template <typename T>
void max_pool_nchw_backward(const Pool2dParams& p) {
  using V = Vec<T>;
  const T* in = static_cast<const T*>(p.input);
  const T* gout = static_cast<const T*>(p.grad_output);
  T* gin = static_cast<T*>(p.grad_input);
  int64_t lo, hi;
  interior_columns(p, lo, hi);
  if (p.kH * p.kW >= (int64_t(1) << 24)) lo = hi = 0;
  const int64_t planes = p.N * p.C;
  const bool par = p.num_threads > 1 && planes > 1 && planes * p.H * p.W > 16384;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* src = in + pl * p.H * p.W;
    const T* g = gout + pl * p.OH * p.OW;
    T* dst = gin + pl * p.H * p.W;
    for (int64_t i = 0; i < p.H * p.W; ++i) dst[i] = T(0);
    for (int64_t oh = 0; oh < p.OH; ++oh) {
      const T* grow = g + oh * p.OW;
      const MaxSpan h = max_span(oh, p.kH, p.sH, p.pH, p.dH, p.H);
      auto scalar = [&](int64_t ow) {
        const MaxSpan w = max_span(ow, p.kW, p.sW, p.pW, p.dW, p.W);
        int64_t index;
        max_window_scalar(src, p, h, w, index);
        // An empty window (only in degenerate shapes) has no input to send its gradient to.
        if (h.t_begin < h.t_end && w.t_begin < w.t_end) dst[index] += grow[ow];
      };
      for (int64_t ow = 0; ow < lo; ++ow) scalar(ow);
      if (h.t_begin < h.t_end) {
        for (int64_t ow = lo; ow < hi; ow += V::size) {
          const int n = static_cast<int>(min64(V::size, hi - ow));
          V tap;
          max_chunk<T, true>(src, p, h, ow, n, tap);
          const V gv = V::load(grow + ow, n);
          const int64_t base = ow * p.sW - p.pW;
          for (int64_t th = h.t_begin; th < h.t_end; ++th) {
            T* row = dst + (h.start + th * p.dH) * p.W;
            int64_t tw = 0;
            if (p.sW == 2 && p.dW == 1) {
              // Taps tw and tw+1 of all lanes cover row[base + tw + 0 .. 2n) once each.
              for (; tw < p.kW; tw += 2) {
                const V te = V::broadcast(static_cast<T>(th * p.kW + tw));
                const V to = V::broadcast(static_cast<T>(th * p.kW + tw + 1));
                const V ge = V::select(V::eq(tap, te), gv, V::zero());
                const V go = tw + 1 < p.kW ? V::select(V::eq(tap, to), gv, V::zero()) : V::zero();
                add_pair(row + base + tw, ge, go, n, p.W - (base + tw));
              }
            }
            for (; tw < p.kW; ++tw) {
              const V t = V::broadcast(static_cast<T>(th * p.kW + tw));
              const V contrib = V::select(V::eq(tap, t), gv, V::zero());
              T* col = row + base + tw * p.dW;
              if (p.sW == 1) {
                (V::load(col, n) + contrib).store(col, n);
              } else {
                T c[V::size];
                contrib.store(c);
                for (int i = 0; i < n; ++i) col[i * p.sW] += c[i];
              }
            }
          }
        }
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) scalar(ow);
      }
      for (int64_t ow = hi; ow < p.OW; ++ow) scalar(ow);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Max pooling, NHWC (channels_last): lanes run along C, the window walk is shared by all lanes.
// ---------------------------------------------------------------------------------------------

// Max over one window for U vectors of channels starting at c (the last one holding nl lanes):
// the running max per lane and, when kTrack, the winning tap number th*kW + tw (exact in T while
// kH*kW < 2^24). U independent chains keep the FP units busy while the loads are in flight.
template <typename T, int U, bool kTrack>
BM_INLINE void max_window_nhwc(const T* img, const Pool2dParams& p, const MaxSpan& h, const MaxSpan& w,
                               int64_t c, int nl, Vec<T> (&best)[U], Vec<T> (&tap)[U]) {
  using V = Vec<T>;
  for (int u = 0; u < U; ++u) {
    best[u] = V::broadcast(neg_inf<T>());
    tap[u] = V::zero();
  }
  bool first = true;
  for (int64_t th = h.t_begin; th < h.t_end; ++th) {
    const T* row = img + (h.start + th * p.dH) * p.W * p.C + c;
    for (int64_t tw = w.t_begin; tw < w.t_end; ++tw) {
      const T* q = row + (w.start + tw * p.dW) * p.C;
      const V t = V::broadcast(static_cast<T>(th * p.kW + tw));
      for (int u = 0; u < U; ++u) {
        const V v = V::load(q + u * V::size, u == U - 1 ? nl : V::size);
        if (first) {
          best[u] = v;
          if (kTrack) tap[u] = t;
          continue;
        }
        const auto m = V::mask_or(V::gt(v, best[u]), V::isnan(v));
        best[u] = V::select(m, v, best[u]);
        if (kTrack) tap[u] = V::select(m, t, tap[u]);
      }
      first = false;
    }
  }
}

// Scalar max over one window for channel c (huge windows, where tap numbers would not be exact).
template <typename T>
BM_INLINE T max_window_nhwc_scalar(const T* img, const Pool2dParams& p, const MaxSpan& h, const MaxSpan& w,
                                   int64_t c, int64_t& index) {
  T best = neg_inf<T>();
  index = (h.start + h.t_begin * p.dH) * p.W + (w.start + w.t_begin * p.dW);
  for (int64_t th = h.t_begin; th < h.t_end; ++th)
    for (int64_t tw = w.t_begin; tw < w.t_end; ++tw) {
      const int64_t pos = (h.start + th * p.dH) * p.W + (w.start + tw * p.dW);
      const T v = img[pos * p.C + c];
      if (v > best || v != v) {
        best = v;
        index = pos;
      }
    }
  return best;
}

template <typename T>
void max_pool_nhwc_forward(const Pool2dParams& p) {
  using V = Vec<T>;
  const T* in = static_cast<const T*>(p.input);
  T* out = static_cast<T*>(p.output);
  const int64_t C = p.C;
  const bool exact_taps = p.kH * p.kW < (int64_t(1) << 24);
  const AlignedBuffer wspan_mem = column_spans<MaxSpan>(p.OW, [&](int64_t ow) { return max_span(ow, p.kW, p.sW, p.pW, p.dW, p.W); });
  const MaxSpan* wspan = wspan_mem.as<MaxSpan>();
  const int64_t rows = p.N * p.OH;
  const bool par = p.num_threads > 1 && rows * p.OW * C * p.kH * p.kW > 32768;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / p.OH, oh = r - n * p.OH;
    const MaxSpan h = max_span(oh, p.kH, p.sH, p.pH, p.dH, p.H);
    const T* img = in + n * p.H * p.W * C;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const MaxSpan& w = wspan[ow];
      const int64_t px = r * p.OW + ow;
      T* o = out + px * C;
      int64_t* idx = p.indices ? p.indices + px * C : nullptr;
      if (idx && !exact_taps) {
        for (int64_t c = 0; c < C; ++c) o[c] = max_window_nhwc_scalar(img, p, h, w, c, idx[c]);
        continue;
      }
      const bool empty = h.t_begin >= h.t_end || w.t_begin >= w.t_end;
      auto finish = [&](int64_t c, int nl, const V& tap) {
        T taps[V::size];
        tap.store(taps);
        for (int i = 0; i < nl; ++i) {
          int64_t th = h.t_begin, tw = w.t_begin;  // an empty window reports its first position
          if (!empty) {
            th = static_cast<int64_t>(taps[i]) / p.kW;
            tw = static_cast<int64_t>(taps[i]) - th * p.kW;
          }
          idx[c + i] = (h.start + th * p.dH) * p.W + (w.start + tw * p.dW);
        }
      };
      int64_t c = 0;
      for (; c + 4 * V::size <= C; c += 4 * V::size) {
        V best[4], tap[4];
        if (idx)
          max_window_nhwc<T, 4, true>(img, p, h, w, c, V::size, best, tap);
        else
          max_window_nhwc<T, 4, false>(img, p, h, w, c, V::size, best, tap);
        for (int u = 0; u < 4; ++u) {
          best[u].store(o + c + u * V::size);
          if (idx) finish(c + u * V::size, V::size, tap[u]);
        }
      }
      for (; c < C; c += V::size) {
        const int nl = static_cast<int>(min64(V::size, C - c));
        V best[1], tap[1];
        if (idx)
          max_window_nhwc<T, 1, true>(img, p, h, w, c, nl, best, tap);
        else
          max_window_nhwc<T, 1, false>(img, p, h, w, c, nl, best, tap);
        best[0].store(o + c, nl);
        if (idx) finish(c, nl, tap[0]);
      }
    }
  }
}

template <typename T>
void max_pool_nhwc_backward(const Pool2dParams& p) {
  using V = Vec<T>;
  const T* in = static_cast<const T*>(p.input);
  const T* gout = static_cast<const T*>(p.grad_output);
  T* gin = static_cast<T*>(p.grad_input);
  const int64_t C = p.C;
  const int64_t cb = nhwc_channel_block(p, V::size);
  const int64_t nblocks = ceil_div(C, cb);
  const int64_t items = p.N * nblocks;
  const bool exact_taps = p.kH * p.kW < (int64_t(1) << 24);
  const AlignedBuffer wspan_mem = column_spans<MaxSpan>(p.OW, [&](int64_t ow) { return max_span(ow, p.kW, p.sW, p.pW, p.dW, p.W); });
  const MaxSpan* wspan = wspan_mem.as<MaxSpan>();
  const bool par = p.num_threads > 1 && items > 1 && p.N * p.H * p.W * C > 16384;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / nblocks;
    const int64_t c0 = (it % nblocks) * cb, c1 = min64(C, c0 + cb);
    const T* img = in + n * p.H * p.W * C;
    T* dst = gin + n * p.H * p.W * C;
    int64_t zeroed = 0;  // rows [0, zeroed) of dst are initialised
    for (int64_t oh = 0; oh < p.OH; ++oh) {
      const MaxSpan h = max_span(oh, p.kH, p.sH, p.pH, p.dH, p.H);
      if (h.t_begin >= h.t_end) continue;
      const int64_t row_end = h.start + (h.t_end - 1) * p.dH + 1;
      if (row_end > zeroed) {
        zero_rows_nhwc(dst, p, zeroed, row_end, c0, c1);
        zeroed = row_end;
      }
      for (int64_t ow = 0; ow < p.OW; ++ow) {
        const MaxSpan& w = wspan[ow];
        if (w.t_begin >= w.t_end) continue;
        const T* g = gout + ((n * p.OH + oh) * p.OW + ow) * C;
        if (!exact_taps) {
          for (int64_t c = c0; c < c1; ++c) {
            int64_t index;
            max_window_nhwc_scalar(img, p, h, w, c, index);
            dst[index * C + c] += g[c];
          }
          continue;
        }
        for (int64_t c = c0; c < c1; c += V::size) {
          const int nl = static_cast<int>(min64(V::size, c1 - c));
          V best[1], taps[1];
          max_window_nhwc<T, 1, true>(img, p, h, w, c, nl, best, taps);
          const V tap = taps[0];
          const V gv = V::load(g + c, nl);
          for (int64_t th = h.t_begin; th < h.t_end; ++th) {
            T* row = dst + (h.start + th * p.dH) * p.W * C;
            for (int64_t tw = w.t_begin; tw < w.t_end; ++tw) {
              const V t = V::broadcast(static_cast<T>(th * p.kW + tw));
              T* d = row + (w.start + tw * p.dW) * C + c;
              (V::load(d, nl) + V::select(V::eq(tap, t), gv, V::zero())).store(d, nl);
            }
          }
        }
      }
    }
    zero_rows_nhwc(dst, p, zeroed, p.H, c0, c1);
  }
}

}  // namespace

// Entry points (float32 / float64, validated in pool.cpp).
POOL_ENTRY_POINT(max_pool2d_forward, max_pool_nchw_forward, max_pool_nhwc_forward)
POOL_ENTRY_POINT(max_pool2d_backward, max_pool_nchw_backward, max_pool_nhwc_backward)

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
