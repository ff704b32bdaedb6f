// 2-D average pooling on the CPU, forward and backward, NCHW and NHWC. Compiled once per ISA
// path (see kernels/cpu/simd.h); kernels/cpu/pool/pool.cpp dispatches. Same structure as
// pool_max_kernel.cpp: NCHW vectorised along W over the interior columns with a scalar loop for
// the rest, NHWC vectorised along C; the backward's scatter-add gives each thread whole planes
// (NCHW) or image / channel blocks (NHWC).
#include <omp.h>

#include "cpu/pool/pool_common.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// ---------------------------------------------------------------------------------------------
// Average pooling
// ---------------------------------------------------------------------------------------------

BM_INLINE int64_t avg_divisor(const Pool2dParams& p, const AvgSpan& h, const AvgSpan& w) {
  if (p.divisor_override) return p.divisor_override;
  return p.count_include_pad ? h.pool * w.pool : (h.end - h.begin) * (w.end - w.begin);
}

template <typename T>
void avg_pool_nchw_forward(const Pool2dParams& p) {
  using V = Vec<T>;
  const T* in = static_cast<const T*>(p.input);
  T* out = static_cast<T*>(p.output);
  int64_t lo, hi;
  interior_columns(p, lo, hi);  // dW == 1 for average pooling
  const int64_t rows = p.N * p.C * p.OH;
  const bool par = p.num_threads > 1 && rows * p.OW * p.kH * p.kW > 32768;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pl = r / p.OH, oh = r - pl * p.OH;
    const T* plane = in + pl * p.H * p.W;
    T* orow = out + r * p.OW;
    const AvgSpan h = avg_span(oh, p.kH, p.sH, p.pH, p.H);
    auto scalar = [&](int64_t ow) {
      const AvgSpan w = avg_span(ow, p.kW, p.sW, p.pW, p.W);
      if (h.begin >= h.end || w.begin >= w.end) {
        orow[ow] = T(0);
        return;
      }
      T sum = T(0);
      for (int64_t ih = h.begin; ih < h.end; ++ih)
        for (int64_t iw = w.begin; iw < w.end; ++iw) sum += plane[ih * p.W + iw];
      orow[ow] = sum / static_cast<T>(avg_divisor(p, h, w));
    };
    for (int64_t ow = 0; ow < lo; ++ow) scalar(ow);
    if (h.begin < h.end) {
      const AvgSpan wfull{0, p.kW, p.kW};
      const V div = V::broadcast(static_cast<T>(avg_divisor(p, h, wfull)));
      for (int64_t ow = lo; ow < hi; ow += V::size) {
        const int n = static_cast<int>(min64(V::size, hi - ow));
        const int64_t base = ow * p.sW - p.pW;
        V sum = V::zero();
        for (int64_t ih = h.begin; ih < h.end; ++ih) {
          const T* row = plane + ih * p.W;
          for (int64_t tw = 0; tw < p.kW; ++tw) sum = sum + load_tap(row + base + tw, p.sW, n, p.W - base - tw);
        }
        (sum / div).store(orow + ow, n);
      }
    } else {
      for (int64_t ow = lo; ow < hi; ++ow) scalar(ow);
    }
    for (int64_t ow = hi; ow < p.OW; ++ow) scalar(ow);
  }
}

template <typename T>
void avg_pool_nchw_backward(const Pool2dParams& p) {
  using V = Vec<T>;
  const T* gout = static_cast<const T*>(p.grad_output);
  T* gin = static_cast<T*>(p.grad_input);
  int64_t lo, hi;
  interior_columns(p, lo, hi);
  const int64_t planes = p.N * p.C;
  const bool par = p.num_threads > 1 && planes > 1 && planes * p.H * p.W > 16384;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* g = gout + pl * p.OH * p.OW;
    T* dst = gin + pl * p.H * p.W;
    for (int64_t i = 0; i < p.H * p.W; ++i) dst[i] = T(0);
    for (int64_t oh = 0; oh < p.OH; ++oh) {
      const T* grow = g + oh * p.OW;
      const AvgSpan h = avg_span(oh, p.kH, p.sH, p.pH, p.H);
      if (h.begin >= h.end) continue;
      auto scalar = [&](int64_t ow) {
        const AvgSpan w = avg_span(ow, p.kW, p.sW, p.pW, p.W);
        if (w.begin >= w.end) return;
        const T v = grow[ow] / static_cast<T>(avg_divisor(p, h, w));
        for (int64_t ih = h.begin; ih < h.end; ++ih)
          for (int64_t iw = w.begin; iw < w.end; ++iw) dst[ih * p.W + iw] += v;
      };
      for (int64_t ow = 0; ow < lo; ++ow) scalar(ow);
      const AvgSpan wfull{0, p.kW, p.kW};
      const V div = V::broadcast(static_cast<T>(avg_divisor(p, h, wfull)));
      for (int64_t ow = lo; ow < hi; ow += V::size) {
        const int n = static_cast<int>(min64(V::size, hi - ow));
        const V gv = V::load(grow + ow, n) / div;
        const int64_t base = ow * p.sW - p.pW;
        for (int64_t ih = h.begin; ih < h.end; ++ih) {
          T* row = dst + ih * p.W;
          int64_t tw = 0;
          if (p.sW == 2) {
            for (; tw < p.kW; tw += 2) add_pair(row + base + tw, gv, tw + 1 < p.kW ? gv : V::zero(), n, p.W - (base + tw));
          }
          for (; tw < p.kW; ++tw) {
            T* col = row + base + tw;
            if (p.sW == 1) {
              (V::load(col, n) + gv).store(col, n);
            } else {
              T c[V::size];
              gv.store(c);
              for (int i = 0; i < n; ++i) col[i * p.sW] += c[i];
            }
          }
        }
      }
      for (int64_t ow = hi; ow < p.OW; ++ow) scalar(ow);
    }
  }
}

template <typename T>
void avg_pool_nhwc_forward(const Pool2dParams& p) {
  using V = Vec<T>;
  const T* in = static_cast<const T*>(p.input);
  T* out = static_cast<T*>(p.output);
  const int64_t C = p.C;
  const AlignedBuffer wspan_mem = column_spans<AvgSpan>(p.OW, [&](int64_t ow) { return avg_span(ow, p.kW, p.sW, p.pW, p.W); });
  const AvgSpan* wspan = wspan_mem.as<AvgSpan>();
  const int64_t rows = p.N * p.OH;
  const bool par = p.num_threads > 1 && rows * p.OW * C * p.kH * p.kW > 32768;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / p.OH, oh = r - n * p.OH;
    const AvgSpan h = avg_span(oh, p.kH, p.sH, p.pH, p.H);
    const T* img = in + n * p.H * p.W * C;
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const AvgSpan& w = wspan[ow];
      T* o = out + (r * p.OW + ow) * C;
      if (h.begin >= h.end || w.begin >= w.end) {
        for (int64_t c = 0; c < C; c += V::size) V::zero().store(o + c, static_cast<int>(min64(V::size, C - c)));
        continue;
      }
      const V div = V::broadcast(static_cast<T>(avg_divisor(p, h, w)));
      int64_t c = 0;
      for (; c + 4 * V::size <= C; c += 4 * V::size) {  // 4 independent sums per window walk
        V sum[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
        for (int64_t ih = h.begin; ih < h.end; ++ih) {
          const T* row = img + ih * p.W * C + c;
          for (int64_t iw = w.begin; iw < w.end; ++iw)
            for (int u = 0; u < 4; ++u) sum[u] = sum[u] + V::load(row + iw * C + u * V::size);
        }
        for (int u = 0; u < 4; ++u) (sum[u] / div).store(o + c + u * V::size);
      }
      for (; c < C; c += V::size) {
        const int nl = static_cast<int>(min64(V::size, C - c));
        V sum = V::zero();
        for (int64_t ih = h.begin; ih < h.end; ++ih) {
          const T* row = img + ih * p.W * C + c;
          for (int64_t iw = w.begin; iw < w.end; ++iw) sum = sum + V::load(row + iw * C, nl);
        }
        (sum / div).store(o + c, nl);
      }
    }
  }
}

template <typename T>
void avg_pool_nhwc_backward(const Pool2dParams& p) {
  using V = Vec<T>;
  const T* gout = static_cast<const T*>(p.grad_output);
  T* gin = static_cast<T*>(p.grad_input);
  const int64_t C = p.C;
  const int64_t cb = nhwc_channel_block(p, V::size);
  const int64_t nblocks = ceil_div(C, cb);
  const int64_t items = p.N * nblocks;
  const AlignedBuffer wspan_mem = column_spans<AvgSpan>(p.OW, [&](int64_t ow) { return avg_span(ow, p.kW, p.sW, p.pW, p.W); });
  const AvgSpan* wspan = wspan_mem.as<AvgSpan>();
  const bool par = p.num_threads > 1 && items > 1 && p.N * p.H * p.W * C > 16384;
#pragma omp parallel for schedule(static) num_threads(p.num_threads) if (par)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / nblocks;
    const int64_t c0 = (it % nblocks) * cb, c1 = min64(C, c0 + cb);
    T* dst = gin + n * p.H * p.W * C;
    int64_t zeroed = 0;
    for (int64_t oh = 0; oh < p.OH; ++oh) {
      const AvgSpan h = avg_span(oh, p.kH, p.sH, p.pH, p.H);
      if (h.begin >= h.end) continue;
      if (h.end > zeroed) {
        zero_rows_nhwc(dst, p, zeroed, h.end, c0, c1);
        zeroed = h.end;
      }
      for (int64_t ow = 0; ow < p.OW; ++ow) {
        const AvgSpan& w = wspan[ow];
        if (w.begin >= w.end) continue;
        const T* g = gout + ((n * p.OH + oh) * p.OW + ow) * C;
        const V div = V::broadcast(static_cast<T>(avg_divisor(p, h, w)));
        for (int64_t c = c0; c < c1; c += V::size) {
          const int nl = static_cast<int>(min64(V::size, c1 - c));
          const V gv = V::load(g + c, nl) / div;
          for (int64_t ih = h.begin; ih < h.end; ++ih) {
            T* row = dst + ih * p.W * C + c;
            for (int64_t iw = w.begin; iw < w.end; ++iw) (V::load(row + iw * C, nl) + gv).store(row + iw * C, nl);
          }
        }
      }
    }
    zero_rows_nhwc(dst, p, zeroed, p.H, c0, c1);
  }
}

}  // namespace

// Entry points (float32 / float64, validated in pool.cpp).
POOL_ENTRY_POINT(avg_pool2d_forward, avg_pool_nchw_forward, avg_pool_nhwc_forward)
POOL_ENTRY_POINT(avg_pool2d_backward, avg_pool_nchw_backward, avg_pool_nhwc_backward)

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
