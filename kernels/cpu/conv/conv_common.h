// Pieces shared by the per-ISA convolution kernels (conv_*_kernel.cpp): per-thread scratch,
// register-tile shapes, and the "band": a zero-padded copy of the rows of one
// image that a block of outputs reads.
//
// Only for *_kernel.cpp files: everything lives in the per-ISA namespace of kernels/cpu/simd.h.
#pragma once

#include "bigmodel/conv.h"
#include "cpu/simd.h"
#include "cpu/transpose.h"
#include "cpu/util.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// Per-thread scratch of the conv kernels in one allocation: for each of nt threads, `elems` T,
// `noffs` offsets and `nptrs` pointers; thread i's pieces start at data + i * elems, offs + i *
// noffs and ptrs + i * nptrs. Allocated outside the parallel region.
template <typename T>
struct ThreadScratch {
  AlignedBuffer mem;
  T* data;
  int64_t* offs;
  const T** ptrs;
  ThreadScratch(int64_t elems, int64_t noffs, int64_t nptrs, int nt)
      : mem(align64(elems * nt * int64_t(sizeof(T))) + align64(noffs * nt * int64_t(sizeof(int64_t))) +
            nptrs * nt * int64_t(sizeof(T*))),
        data(mem.as<T>()),
        offs(reinterpret_cast<int64_t*>(mem.data() + align64(elems * nt * int64_t(sizeof(T))))),
        ptrs(reinterpret_cast<const T**>(reinterpret_cast<char*>(offs) + align64(noffs * nt * int64_t(sizeof(int64_t))))) {}
};

template <typename T>
void fill_zero(T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = T(0);
}

// ---- register tiles ----------------------------------------------------------------------------
// A direct tile keeps NP pixels x NV vectors of channels in registers: AVX-512 has 32 registers
// (24 accumulators + NV weight vectors + 1 broadcast at NV = 4), AVX2 16, and the generic path
// runs on scalars. kMaxNV is the widest tile; np_for(nv) the pixel count that fills the registers.
#if defined(BIGMODEL_BUILD_AVX512)
constexpr int kMaxNV = 4;
constexpr int np_for(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : nv == 2 ? 12 : 16; }
#elif defined(BIGMODEL_BUILD_AVX2)
constexpr int kMaxNV = 2;
constexpr int np_for(int nv) { return nv == 2 ? 6 : 12; }
#else
constexpr int kMaxNV = 4;
constexpr int np_for(int nv) { return nv == 4 ? 2 : nv == 3 ? 3 : nv == 2 ? 4 : 8; }
#endif
constexpr int kMaxNP = np_for(1);

// Tap accumulators per pass over the pixels in the depthwise weight gradients (registers:
// kTapChunk + a few); the chunk size is a template argument so that they live in registers.
constexpr int kTapChunk = 12;

// Sum of the lanes of v. (GCC 12 flags its own _mm512_undefined placeholders in the reduction
// intrinsics as "(may be) used uninitialized" once inlined; the diagnostic is silenced here only.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
template <typename T>
BM_INLINE T reduce_add(Vec<T> v);
#if defined(BIGMODEL_BUILD_AVX512)
template <>
BM_INLINE float reduce_add<float>(Vec<float> v) { return _mm512_reduce_add_ps(v.v); }
template <>
BM_INLINE double reduce_add<double>(Vec<double> v) { return _mm512_reduce_add_pd(v.v); }
#elif defined(BIGMODEL_BUILD_AVX2)
template <>
BM_INLINE float reduce_add<float>(Vec<float> v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v.v), _mm256_extractf128_ps(v.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
template <>
BM_INLINE double reduce_add<double>(Vec<double> v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v.v), _mm256_extractf128_pd(v.v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
#else
template <typename T>
BM_INLINE T reduce_add(Vec<T> v) {
  return v.v;
}
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// ---- bands ----------------------------------------------------------------------------------
// A band is the block [r0, r0 + rows) x [c0, c0 + cols) of every channel of one image, where
// positions outside [0, H) x [0, W) read as zero. Element (r, c, ch) is at
// base[r * rs + c * cs + ch * chs]. It is the image itself when the block lies inside it (and the
// image's layout is acceptable), else a zero-padded copy in scratch: NHWC when `want_nhwc`
// (an NCHW image is transposed on the way), otherwise in the image's layout.
template <typename T>
struct Band {
  const T* base;
  int64_t rs, cs, chs;
};

BM_INLINE int64_t band_elems(int64_t C, int64_t rows, int64_t cols) { return C * rows * cols; }

// `image` is one (C, H, W) image in `layout`; `scratch` holds at least band_elems(C, rows, cols).
template <typename T>
Band<T> make_band(const T* image, Layout layout, int64_t C, int64_t H, int64_t W, int64_t r0, int64_t rows,
                  int64_t c0, int64_t cols, bool want_nhwc, T* scratch) {
  const bool inside = r0 >= 0 && r0 + rows <= H && c0 >= 0 && c0 + cols <= W;
  if (inside && layout == Layout::nhwc) return {image + (r0 * W + c0) * C, W * C, C, 1};
  if (inside && !want_nhwc) return {image + r0 * W + c0, W, 1, H * W};
  // columns [cl, cr) of the band lie inside the image
  const int64_t cl = min64(cols, max64(0, -c0)), cr = max64(cl, min64(cols, W - c0));
  if (layout == Layout::nchw && !want_nhwc) {
    for (int64_t ch = 0; ch < C; ++ch) {
      for (int64_t r = 0; r < rows; ++r) {
        T* d = scratch + (ch * rows + r) * cols;
        const int64_t ih = r0 + r;
        if (ih < 0 || ih >= H) {
          fill_zero(d, cols);
          continue;
        }
        const T* s = image + (ch * H + ih) * W + c0;
        fill_zero(d, cl);
        for (int64_t c = cl; c < cr; ++c) d[c] = s[c];
        fill_zero(d + cr, cols - cr);
      }
    }
    return {scratch, cols, 1, rows * cols};
  }
  for (int64_t r = 0; r < rows; ++r) {
    T* d = scratch + r * cols * C;
    const int64_t ih = r0 + r;
    if (ih < 0 || ih >= H) {
      fill_zero(d, cols * C);
      continue;
    }
    fill_zero(d, cl * C);
    if (layout == Layout::nhwc) {
      const T* s = image + (ih * W + c0) * C;
      for (int64_t i = cl * C; i < cr * C; ++i) d[i] = s[i];
    } else {  // (C x columns) of row ih -> (columns x C)
      transpose_2d(image + ih * W + c0 + cl, H * W, d + cl * C, C, C, cr - cl);
    }
    fill_zero(d + cr * C, (cols - cr) * C);
  }
  return {scratch, cols * C, C, 1};
}

// ---- work split -----------------------------------------------------------------------------
// Output rows per band: a band's input rows and outputs (bytes_per_row each row) should fit in
// `budget` bytes of L2 next to the weights, and there should be at least two bands per thread so
// that the split is even (small batches are cut into more bands). Bands are equal but the last.
BM_INLINE int64_t band_rows(int64_t N, int64_t out_rows, int64_t bytes_per_row, int64_t budget, int nt) {
  int64_t R = max64(1, budget / max64(1, bytes_per_row));
  R = min64(R, out_rows);
  const int64_t want_bands = ceil_div(2 * nt, max64(N, 1));
  if (want_bands > 1) R = min64(R, max64(1, ceil_div(out_rows, want_bands)));
  return ceil_div(out_rows, ceil_div(out_rows, R));
}

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
