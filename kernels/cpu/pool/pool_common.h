// Pieces shared by the per-ISA pooling kernels (pool_max_kernel.cpp, pool_avg_kernel.cpp): the
// window spans along one dimension, interior columns, strided tap loads / scatter-adds, NHWC
// work items. Only for *_kernel.cpp files: everything lives in the per-ISA namespace of
// kernels/cpu/simd.h.
#pragma once

#include "bigmodel/pool.h"
#include "cpu/simd.h"
#include "cpu/util.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// Taps [t_begin, t_end) of one window along one dimension under the max-pool rule: tap t sits at
// start + t*d and only taps inside [0, in) exist.
struct MaxSpan {
  int64_t start;
  int64_t t_begin, t_end;
};

BM_INLINE MaxSpan max_span(int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, int64_t in) {
  MaxSpan r;
  r.start = o * s - p;
  r.t_begin = r.start < 0 ? (-r.start + d - 1) / d : 0;
  const int64_t last = in - 1 - r.start;  // tap t valid while t*d <= last
  r.t_end = last < 0 ? 0 : min64(k, last / d + 1);
  return r;
}

// Average-pool window along one dimension: [begin, end) inside the input, and `pool` = the
// length including padding (torch clips the window to in + p before counting it).
struct AvgSpan {
  int64_t begin, end, pool;
};

BM_INLINE AvgSpan avg_span(int64_t o, int64_t k, int64_t s, int64_t p, int64_t in) {
  const int64_t start = o * s - p;
  const int64_t stop = min64(start + k, in + p);
  return {max64(start, 0), min64(stop, in), stop - start};
}

// Output columns [lo, hi) whose k taps all lie in [0, in).
BM_INLINE void interior_columns(const Pool2dParams& p, int64_t& lo, int64_t& hi) {
  // ow*sW - pW >= 0  and  ow*sW - pW + (kW-1)*dW <= W-1
  lo = (p.pW + p.sW - 1) / p.sW;
  const int64_t last = p.W - 1 + p.pW - (p.kW - 1) * p.dW;
  hi = last < 0 ? 0 : min64(p.OW, last / p.sW + 1);
  if (hi < lo) hi = lo;
  if (lo > p.OW) lo = hi = p.OW;
}

// One tap of an interior chunk: lanes i < n read row[i * sW]; `room` elements are readable.
template <typename T>
BM_INLINE Vec<T> load_tap(const T* row, int64_t sW, int n, int64_t room) {
  using V = Vec<T>;
  if (sW == 1) return V::load(row, n);
  if (sW == 2) return n == V::size && room >= 2 * V::size ? V::load_even(row) : V::load_even(row, n);
  return V::load_strided(row, sW, n);
}

// row[2i] += even[i], row[2i+1] += odd[i] for lanes i < n, touching nothing at or past `room`.
template <typename T>
BM_INLINE void add_pair(T* row, Vec<T> even, Vec<T> odd, int n, int64_t room) {
  using V = Vec<T>;
  if (n == V::size && room >= 2 * V::size)
    V::add_interleaved(row, even, odd);
  else
    V::add_interleaved(row, even, odd, static_cast<int>(min64(2 * n, room)));
}

// Column windows, computed once per call (they are the same for every row and image).
template <typename Span, typename F>
AlignedBuffer column_spans(int64_t OW, F&& make) {
  AlignedBuffer mem = AlignedBuffer::of<Span>(OW);
  Span* spans = mem.as<Span>();
  for (int64_t ow = 0; ow < OW; ++ow) spans[ow] = make(ow);
  return mem;
}

// Work items for NHWC backward: (image, channel block) pairs, so a small batch still spreads
// over the threads while each item owns its slice of grad_input.
BM_INLINE int64_t nhwc_channel_block(const Pool2dParams& p, int vec) {
  if (p.N >= 2 * p.num_threads || p.C <= vec) return p.C;
  return max64(vec, round_up(ceil_div(p.C, ceil_div(2 * p.num_threads, p.N)), vec));
}

// Zeroes grad_input rows [from, to) of one image, channels [c0, c1). NHWC backward zeroes rows
// just before the first window touches them, so the scatter-adds hit cache, not memory.
template <typename T>
BM_INLINE void zero_rows_nhwc(T* img, const Pool2dParams& p, int64_t from, int64_t to, int64_t c0, int64_t c1) {
  using V = Vec<T>;
  for (int64_t pos = from * p.W; pos < to * p.W; ++pos) {
    T* d = img + pos * p.C;
    for (int64_t c = c0; c < c1; c += V::size) V::zero().store(d + c, static_cast<int>(min64(V::size, c1 - c)));
  }
}

// An empty batch (or any zero size) is a no-op: there is nothing to read or write.
BM_INLINE bool empty_problem(const Pool2dParams& p) {
  return p.N <= 0 || p.C <= 0 || p.H <= 0 || p.W <= 0 || p.OH <= 0 || p.OW <= 0;
}

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS

// Defines the per-ISA entry point `name`: an empty problem reads and writes nothing, otherwise
// the NCHW or NHWC kernel template for the dtype.
#define POOL_ENTRY_POINT(NAME, NCHW_FN, NHWC_FN)                                                \
  void NAME(const Pool2dParams& p) {                                                               \
    if (empty_problem(p)) return;                                                                  \
    BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { p.layout == Layout::nhwc ? NHWC_FN<T>(p) : NCHW_FN<T>(p); }); \
  }
