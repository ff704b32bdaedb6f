// 2-D max / average pooling on CUDA, forward and backward, NCHW and NHWC (channels_last),
// float32, float64, float16 and bfloat16 (16-bit types accumulate in float).
//
// Semantics are torch's and those of the CPU kernels (kernels/cpu/pool/pool_kernel.cpp):
// - max: a window's taps sit at start + t*d (start = o*s - pad) and only taps inside the input
//   exist; they are visited row by row from -inf and a tap replaces the running maximum when it
//   is greater or NaN, so NaN propagates (the last NaN wins) and among equal maxima the first tap
//   wins. The index is ih * W + iw within the (n, c) plane. A window with no tap inside the input
//   (possible with dilation) gives -inf and the index of its first tap at or after 0.
// - avg: the window is clipped to [-pad, in + pad) and its length there is the count_include_pad
//   divisor; the sum runs over the part inside the input; an empty window gives 0.
//
// Versions: v1 (this file) is one thread per output element in the forward and one thread per
// input element in the backward. The backward is a gather: each input element visits the few
// windows that can contain it, in a fixed order (oh, then ow), and sums their contributions, so
// it needs no atomics and is deterministic, and every grad_input element is written exactly once
// (no separate zeroing pass). Max backward recomputes the argmax of each of those windows from
// the input (the schema passes `self`, not indices): with k=2 s=2 an element re-reads one 4-tap
// window, with k=3 s=2 up to four 9-tap windows, mostly from L1/L2 - more loads than a gather
// over stored indices, but no index traffic to DRAM. Not yet timed on a GPU (none is lent to the
// project); candidates once one is: vector loads along C for NHWC, a per-output argmax pass into
// a compact scratch buffer for heavily overlapping max windows.
//
// Index math is 32-bit when every offset and intermediate value provably fits (64-bit integer
// division costs several times more), else 64-bit; the grid-stride loop counter is always 64-bit.
#include <cmath>
#include <cstdint>
#include <limits>

#include "bigmodel/pool.h"
#include "cuda/common.cuh"

namespace bigmodel::cuda {
namespace {

// Sizes and window parameters in the index type the kernel computes with.
template <typename index_t>
struct Geom {
  index_t N, C, H, W, OH, OW;
  index_t kH, kW, sH, sW, pH, pW, dH, dW;
};

template <typename index_t>
Geom<index_t> make_geom(const Pool2dParams& p) {
  auto c = [](int64_t v) { return static_cast<index_t>(v); };
  return {c(p.N),  c(p.C),  c(p.H),  c(p.W),  c(p.OH), c(p.OW), c(p.kH),
          c(p.kW), c(p.sH), c(p.sW), c(p.pH), c(p.pW), c(p.dH), c(p.dW)};
}

// True when 32-bit signed arithmetic cannot overflow anywhere in the kernels below: every offset
// is below the input or output element count, and every position along a dimension (window
// starts o*s - pad, window ends, tap positions and their increment by d, i + pad and the
// candidate ranges in the backward) is bounded in magnitude by out*s + (k-1)*d + 1 + pad + in + d.
bool fits_int32(const Pool2dParams& p) {
  constexpr int64_t kLimit = std::numeric_limits<int32_t>::max();
  auto dim_ok = [](int64_t in, int64_t out, int64_t k, int64_t s, int64_t pad, int64_t d) {
    // No int64 overflow here: k, s, pad, d < 2^31 (checked by the binding) and out*s is at most
    // about in + 2*pad + s.
    return out * s + (k - 1) * d + 1 + pad + in + d <= kLimit;
  };
  return p.N * p.C * p.H * p.W <= kLimit && p.N * p.C * p.OH * p.OW <= kLimit &&
         dim_ok(p.H, p.OH, p.kH, p.sH, p.pH, p.dH) && dim_ok(p.W, p.OW, p.kW, p.sW, p.pW, p.dW);
}

template <typename index_t>
BIGMODEL_HD index_t min_i(index_t a, index_t b) {
  return a < b ? a : b;
}
template <typename index_t>
BIGMODEL_HD index_t max_i(index_t a, index_t b) {
  return a > b ? a : b;
}

// Element `idx` (linear, in its layout) of an (N, C, rows, cols) tensor: its row and column,
// `outer` (the plane n*C + c for NCHW, the image n for NHWC) and the channel c (NHWC only; 0 for
// NCHW, where it is folded into `outer`).
template <typename index_t, bool kNHWC>
struct Position {
  index_t outer, c, row, col;
};

template <typename index_t, bool kNHWC>
BIGMODEL_HD Position<index_t, kNHWC> locate(index_t idx, index_t C, index_t rows, index_t cols) {
  Position<index_t, kNHWC> r;
  if constexpr (kNHWC) {
    r.c = idx % C;
    index_t t = idx / C;
    r.col = t % cols;
    t /= cols;
    r.row = t % rows;
    r.outer = t / rows;
  } else {
    r.c = 0;
    r.col = idx % cols;
    const index_t t = idx / cols;
    r.row = t % rows;
    r.outer = t / rows;
  }
  return r;
}

// The (n, c) plane of a (N, C, rows, cols) tensor: element (r, q) is at base + r*rs + q*cs.
template <typename index_t>
struct Plane {
  index_t base, rs, cs;
};

template <typename index_t, bool kNHWC>
BIGMODEL_HD Plane<index_t> plane_of(const Position<index_t, kNHWC>& at, index_t C, index_t rows, index_t cols) {
  if constexpr (kNHWC)
    return {at.outer * rows * cols * C + at.c, cols * C, C};
  else
    return {at.outer * rows * cols, cols, 1};
}

// Max-pool window along one dimension: tap positions first, first + d, ... below `end`. `first`
// is the first tap at or after 0 (torch: `while (start < 0) start += d`); `end` is
// min(start + (k-1)*d + 1, in). Empty when first >= end.
template <typename index_t>
struct Taps {
  index_t first, end;
};

template <typename index_t>
BIGMODEL_HD Taps<index_t> max_taps(index_t o, index_t k, index_t s, index_t pad, index_t d, index_t in) {
  const index_t start = o * s - pad;
  index_t first = start;
  if (first < 0) first += ((-first + d - 1) / d) * d;
  return {first, min_i<index_t>(start + (k - 1) * d + 1, in)};
}

// Max of one window of the plane at `base` (element (ih, iw) at base[ih * rs + iw * cs]), by the
// rule in the file comment. Writes the maximum and its position; returns false for an empty
// window (then best = -inf and the position is the window's first tap).
template <typename T, typename index_t>
BIGMODEL_HD bool window_max(const T* __restrict__ base, index_t rs, index_t cs, Taps<index_t> h,
                            Taps<index_t> w, index_t dH, index_t dW,
                            typename Num<T>::acc& best, index_t& bh, index_t& bw) {
  using acc = typename Num<T>::acc;
  best = static_cast<acc>(-INFINITY);
  bh = h.first;
  bw = w.first;
  for (index_t ih = h.first; ih < h.end; ih += dH) {
    const T* row = base + ih * rs;
    for (index_t iw = w.first; iw < w.end; iw += dW) {
      const acc v = Num<T>::to_acc(row[iw * cs]);
      if (v > best || is_nan(v)) {
        best = v;
        bh = ih;
        bw = iw;
      }
    }
  }
  return h.first < h.end && w.first < w.end;
}

// Average-pool window along one dimension: [begin, end) inside the input, and `pool`, its length
// after clipping to in + pad (the count_include_pad divisor).
template <typename index_t>
struct AvgSpan {
  index_t begin, end, pool;
};

template <typename index_t>
BIGMODEL_HD AvgSpan<index_t> avg_span(index_t o, index_t k, index_t s, index_t pad, index_t in) {
  const index_t start = o * s - pad;
  const index_t stop = min_i<index_t>(start + k, in + pad);
  return {max_i<index_t>(start, 0), min_i<index_t>(stop, in), stop - start};
}

BIGMODEL_HD int64_t avg_divisor(int64_t divisor_override, bool count_include_pad, int64_t pool_h,
                                int64_t pool_w, int64_t in_h, int64_t in_w) {
  if (divisor_override != 0) return divisor_override;
  return count_include_pad ? pool_h * pool_w : in_h * in_w;
}

// Output positions [lo, hi) along one dimension whose window [o*s - pad, o*s - pad + span)
// contains input position i (span = (k-1)*d + 1). Under dilation a window in this range may
// still step over i; the caller checks.
template <typename index_t>
BIGMODEL_HD void windows_containing(index_t i, index_t span, index_t s, index_t pad, index_t out,
                                    index_t& lo, index_t& hi) {
  const index_t x = i + pad;
  lo = x < span ? 0 : (x - span) / s + 1;
  hi = min_i<index_t>(x / s + 1, out);
}

// ---------------------------------------------------------------------------------------------
// Per-element bodies. Tensors are contiguous in the layout (NHWC when kNHWC, else NCHW):
// in / grad_in (N, C, H, W); out / indices / grad_out (N, C, OH, OW). Each body computes one
// element `idx` (linear in that layout); pool_kernel below runs them over a grid-stride loop, and
// tests/cuda/pool_emulation.cu runs the same bodies (through pool_at) on the host.
// ---------------------------------------------------------------------------------------------

// Output element idx of max pooling (and its index when `indices` is non-null).
template <typename T, typename index_t, bool kNHWC>
BIGMODEL_HD void max_pool_forward_at(index_t idx, const T* __restrict__ in, T* __restrict__ out,
                                     int64_t* __restrict__ indices, const Geom<index_t>& g) {
  const auto o = locate<index_t, kNHWC>(idx, g.C, g.OH, g.OW);
  const Plane<index_t> x = plane_of(o, g.C, g.H, g.W);
  typename Num<T>::acc best;
  index_t bh, bw;
  window_max(in + x.base, x.rs, x.cs, max_taps(o.row, g.kH, g.sH, g.pH, g.dH, g.H),
             max_taps(o.col, g.kW, g.sW, g.pW, g.dW, g.W), g.dH, g.dW, best, bh, bw);
  out[idx] = Num<T>::from_acc(best);
  if (indices != nullptr) indices[idx] = static_cast<int64_t>(bh) * g.W + bw;
}

// Input-gradient element idx of max pooling: grad_out summed over the windows whose recomputed
// argmax is this element, in (oh, ow) order.
template <typename T, typename index_t, bool kNHWC>
BIGMODEL_HD void max_pool_backward_at(index_t idx, const T* __restrict__ in, const T* __restrict__ grad_out,
                                      T* __restrict__ grad_in, const Geom<index_t>& g) {
  using acc = typename Num<T>::acc;
  const auto at = locate<index_t, kNHWC>(idx, g.C, g.H, g.W);
  const Plane<index_t> x = plane_of(at, g.C, g.H, g.W);
  const Plane<index_t> go = plane_of(at, g.C, g.OH, g.OW);
  index_t oh0, oh1, ow0, ow1;
  windows_containing(at.row, (g.kH - 1) * g.dH + 1, g.sH, g.pH, g.OH, oh0, oh1);
  windows_containing(at.col, (g.kW - 1) * g.dW + 1, g.sW, g.pW, g.OW, ow0, ow1);
  acc grad = acc(0);
  for (index_t oh = oh0; oh < oh1; ++oh) {
    if (g.dH > 1 && (at.row + g.pH - oh * g.sH) % g.dH != 0) continue;  // stepped over by dilation
    const Taps<index_t> th = max_taps(oh, g.kH, g.sH, g.pH, g.dH, g.H);
    for (index_t ow = ow0; ow < ow1; ++ow) {
      if (g.dW > 1 && (at.col + g.pW - ow * g.sW) % g.dW != 0) continue;
      const Taps<index_t> tw = max_taps(ow, g.kW, g.sW, g.pW, g.dW, g.W);
      acc best;
      index_t bh, bw;
      if (window_max(in + x.base, x.rs, x.cs, th, tw, g.dH, g.dW, best, bh, bw) && bh == at.row && bw == at.col)
        grad += Num<T>::to_acc(grad_out[go.base + oh * go.rs + ow * go.cs]);
    }
  }
  grad_in[idx] = Num<T>::from_acc(grad);
}

// Output element idx of average pooling.
template <typename T, typename index_t, bool kNHWC>
BIGMODEL_HD void avg_pool_forward_at(index_t idx, const T* __restrict__ in, T* __restrict__ out,
                                     const Geom<index_t>& g, bool count_include_pad, int64_t divisor_override) {
  using acc = typename Num<T>::acc;
  const auto o = locate<index_t, kNHWC>(idx, g.C, g.OH, g.OW);
  const Plane<index_t> x = plane_of(o, g.C, g.H, g.W);
  const AvgSpan<index_t> h = avg_span(o.row, g.kH, g.sH, g.pH, g.H);
  const AvgSpan<index_t> w = avg_span(o.col, g.kW, g.sW, g.pW, g.W);
  if (h.begin >= h.end || w.begin >= w.end) {
    out[idx] = Num<T>::from_acc(acc(0));
    return;
  }
  acc sum = acc(0);
  for (index_t ih = h.begin; ih < h.end; ++ih) {
    const T* row = in + x.base + ih * x.rs;
    for (index_t iw = w.begin; iw < w.end; ++iw) sum += Num<T>::to_acc(row[iw * x.cs]);
  }
  const int64_t div =
      avg_divisor(divisor_override, count_include_pad, h.pool, w.pool, h.end - h.begin, w.end - w.begin);
  out[idx] = Num<T>::from_acc(sum / static_cast<acc>(div));
}

// Input-gradient element idx of average pooling: grad_out / divisor summed over the windows
// containing it (with dilation 1 every window in the range does), in (oh, ow) order.
template <typename T, typename index_t, bool kNHWC>
BIGMODEL_HD void avg_pool_backward_at(index_t idx, const T* __restrict__ grad_out, T* __restrict__ grad_in,
                                      const Geom<index_t>& g, bool count_include_pad, int64_t divisor_override) {
  using acc = typename Num<T>::acc;
  const auto at = locate<index_t, kNHWC>(idx, g.C, g.H, g.W);
  const Plane<index_t> go = plane_of(at, g.C, g.OH, g.OW);
  index_t oh0, oh1, ow0, ow1;
  windows_containing(at.row, g.kH, g.sH, g.pH, g.OH, oh0, oh1);
  windows_containing(at.col, g.kW, g.sW, g.pW, g.OW, ow0, ow1);
  acc grad = acc(0);
  for (index_t oh = oh0; oh < oh1; ++oh) {
    const AvgSpan<index_t> h = avg_span(oh, g.kH, g.sH, g.pH, g.H);
    for (index_t ow = ow0; ow < ow1; ++ow) {
      const AvgSpan<index_t> w = avg_span(ow, g.kW, g.sW, g.pW, g.W);
      const int64_t div =
          avg_divisor(divisor_override, count_include_pad, h.pool, w.pool, h.end - h.begin, w.end - w.begin);
      grad += Num<T>::to_acc(grad_out[go.base + oh * go.rs + ow * go.cs]) / static_cast<acc>(div);
    }
  }
  grad_in[idx] = Num<T>::from_acc(grad);
}

// The four passes as one body, one kernel and one launcher: `a` holds the pointers a pass uses
// (`result` is out for the forwards, grad_in for the backwards).
enum class PoolOp { max_forward, max_backward, avg_forward, avg_backward };

template <typename T>
struct PoolArgs {
  const T* in;
  const T* grad_out;
  T* result;
  int64_t* indices;
  bool count_include_pad;
  int64_t divisor_override;
};

template <PoolOp kOp, typename T, typename index_t, bool kNHWC>
BIGMODEL_HD void pool_at(index_t idx, const PoolArgs<T>& a, const Geom<index_t>& g) {
  if constexpr (kOp == PoolOp::max_forward)
    max_pool_forward_at<T, index_t, kNHWC>(idx, a.in, a.result, a.indices, g);
  else if constexpr (kOp == PoolOp::max_backward)
    max_pool_backward_at<T, index_t, kNHWC>(idx, a.in, a.grad_out, a.result, g);
  else if constexpr (kOp == PoolOp::avg_forward)
    avg_pool_forward_at<T, index_t, kNHWC>(idx, a.in, a.result, g, a.count_include_pad, a.divisor_override);
  else
    avg_pool_backward_at<T, index_t, kNHWC>(idx, a.grad_out, a.result, g, a.count_include_pad, a.divisor_override);
}

constexpr bool is_backward(PoolOp op) { return op == PoolOp::max_backward || op == PoolOp::avg_backward; }

// Elements of the pass's result: the output (forward) or the input gradient (backward).
inline int64_t result_numel(const Pool2dParams& p, PoolOp op) {
  return is_backward(op) ? p.N * p.C * p.H * p.W : p.N * p.C * p.OH * p.OW;
}

template <typename T>
PoolArgs<T> pool_args(const Pool2dParams& p, PoolOp op) {
  return {static_cast<const T*>(p.input), static_cast<const T*>(p.grad_output),
          static_cast<T*>(is_backward(op) ? p.grad_input : p.output), p.indices, p.count_include_pad,
          p.divisor_override};
}

// The body over a grid-stride loop (one element per thread for any realistic size).
template <PoolOp kOp, typename T, typename index_t, bool kNHWC>
__global__ void __launch_bounds__(kThreads) pool_kernel(const PoolArgs<T> a, const Geom<index_t> g, const int64_t total) {
  BIGMODEL_CUDA_GRID_STRIDE_LOOP(i, total) { pool_at<kOp, T, index_t, kNHWC>(static_cast<index_t>(i), a, g); }
}

// Runs pass kOp with 32-bit index math where fits_int32 allows, else 64-bit.
template <PoolOp kOp>
void run(const Pool2dParams& p, void* stream, const char* what) {
  const int64_t total = result_numel(p, kOp);
  if (total == 0) return;
  dispatch_float(p.dtype, what, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const PoolArgs<T> a = pool_args<T>(p, kOp);
    auto go = [&](auto geom) {
      using index_t = decltype(geom.N);
      BOOL_SWITCH(p.layout == Layout::nhwc, kNHWC, [&] {
        launch_kernel(what, pool_kernel<kOp, T, index_t, kNHWC>, blocks_for(total), kThreads, 0,
                      static_cast<cudaStream_t>(stream), a, geom, total);
      });
    };
    if (fits_int32(p))
      go(make_geom<int32_t>(p));
    else
      go(make_geom<int64_t>(p));
  });
}

}  // namespace

void max_pool2d_forward(const Pool2dParams& p, void* stream) { run<PoolOp::max_forward>(p, stream, "max_pool2d_forward"); }
void max_pool2d_backward(const Pool2dParams& p, void* stream) {
  run<PoolOp::max_backward>(p, stream, "max_pool2d_backward");
}
void avg_pool2d_forward(const Pool2dParams& p, void* stream) { run<PoolOp::avg_forward>(p, stream, "avg_pool2d_forward"); }
void avg_pool2d_backward(const Pool2dParams& p, void* stream) {
  run<PoolOp::avg_backward>(p, stream, "avg_pool2d_backward");
}

}  // namespace bigmodel::cuda
