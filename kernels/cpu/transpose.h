// Out-of-place 2-D transpose on the SIMD layer's paths: dst[c * ld + r] = src[r * ls + c].
//
// Only for *_kernel.cpp files (it lives in the per-ISA namespace of kernels/cpu/simd.h). Full
// size x size blocks go through an in-register transpose (AVX-512: 16 x 16 float / 8 x 8 double
// with unpack + 128-bit lane shuffles; AVX2: 8 x 8 / 4 x 4), the edges through a scalar loop.
#pragma once

#include "cpu/simd.h"

// GCC 12 reports its own _mm512_undefined_*() placeholders inside the unpack / shuffle
// intrinsics as "may be used uninitialized" once they are inlined here; they are not ours.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// One full block: rows [0, B) x columns [0, B) of src, B = Vec<T>::size.
template <typename T>
BM_INLINE void transpose_block(const T* src, int64_t ls, T* dst, int64_t ld);

#if defined(BIGMODEL_BUILD_AVX512)
template <>
BM_INLINE void transpose_block<float>(const float* src, int64_t ls, float* dst, int64_t ld) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ls);
  // t[2i + k], lane l: rows (2i, 2i+1) interleaved, columns 4l + 2k and 4l + 2k + 1
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + k], lane l: rows 4i .. 4i+3 of column 4l + k
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // column 4l + k = lane l of r[k], r[4+k], r[8+k], r[12+k]
  for (int k = 0; k < 4; ++k) {
    const __m512 u = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), v = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
    const __m512 x = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
    const __m512 y = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
    _mm512_storeu_ps(dst + (k + 0) * ld, _mm512_shuffle_f32x4(u, x, 0x88));
    _mm512_storeu_ps(dst + (k + 4) * ld, _mm512_shuffle_f32x4(v, y, 0x88));
    _mm512_storeu_ps(dst + (k + 8) * ld, _mm512_shuffle_f32x4(u, x, 0xdd));
    _mm512_storeu_ps(dst + (k + 12) * ld, _mm512_shuffle_f32x4(v, y, 0xdd));
  }
}

template <>
BM_INLINE void transpose_block<double>(const double* src, int64_t ls, double* dst, int64_t ld) {
  __m512d r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_pd(src + i * ls);
  // t[2i + k], lane l: rows (2i, 2i+1) of column 2l + k
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
  }
  // column 2l + k = lane l of t[k], t[2+k], t[4+k], t[6+k]
  for (int k = 0; k < 2; ++k) {
    const __m512d u = _mm512_shuffle_f64x2(t[k], t[2 + k], 0x88), v = _mm512_shuffle_f64x2(t[k], t[2 + k], 0xdd);
    const __m512d x = _mm512_shuffle_f64x2(t[4 + k], t[6 + k], 0x88);
    const __m512d y = _mm512_shuffle_f64x2(t[4 + k], t[6 + k], 0xdd);
    _mm512_storeu_pd(dst + (k + 0) * ld, _mm512_shuffle_f64x2(u, x, 0x88));
    _mm512_storeu_pd(dst + (k + 2) * ld, _mm512_shuffle_f64x2(v, y, 0x88));
    _mm512_storeu_pd(dst + (k + 4) * ld, _mm512_shuffle_f64x2(u, x, 0xdd));
    _mm512_storeu_pd(dst + (k + 6) * ld, _mm512_shuffle_f64x2(v, y, 0xdd));
  }
}

#elif defined(BIGMODEL_BUILD_AVX2)
template <>
BM_INLINE void transpose_block<float>(const float* src, int64_t ls, float* dst, int64_t ld) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ls);
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + k], lane l: rows 4i .. 4i+3 of column 4l + k
  for (int i = 0; i < 2; ++i) {
    const __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 1]);
    const __m256d c = _mm256_castps_pd(t[4 * i + 2]), d = _mm256_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(dst + k * ld, _mm256_permute2f128_ps(r[k], r[4 + k], 0x20));
    _mm256_storeu_ps(dst + (k + 4) * ld, _mm256_permute2f128_ps(r[k], r[4 + k], 0x31));
  }
}

template <>
BM_INLINE void transpose_block<double>(const double* src, int64_t ls, double* dst, int64_t ld) {
  __m256d r[4], t[4];
  for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_pd(src + i * ls);
  t[0] = _mm256_unpacklo_pd(r[0], r[1]);
  t[1] = _mm256_unpackhi_pd(r[0], r[1]);
  t[2] = _mm256_unpacklo_pd(r[2], r[3]);
  t[3] = _mm256_unpackhi_pd(r[2], r[3]);
  for (int k = 0; k < 2; ++k) {
    _mm256_storeu_pd(dst + k * ld, _mm256_permute2f128_pd(t[k], t[2 + k], 0x20));
    _mm256_storeu_pd(dst + (k + 2) * ld, _mm256_permute2f128_pd(t[k], t[2 + k], 0x31));
  }
}

#else
template <typename T>
BM_INLINE void transpose_block(const T* src, int64_t, T* dst, int64_t) {
  *dst = *src;
}
#endif

// dst[c * ld + r] = src[r * ls + c] for r < rows, c < cols. A transpose is a copy, so when a
// dimension is at least one block long its last block is taken flush with the end, overlapping
// the previous one (the overlap is written twice with the same values) instead of going through
// the scalar edge loop; src and dst must not overlap.
template <typename T>
void transpose_2d(const T* src, int64_t ls, T* dst, int64_t ld, int64_t rows, int64_t cols) {
  constexpr int B = Vec<T>::size;
  if (B > 1 && rows >= B && cols >= B) {
    for (int64_t r0 = 0; r0 < rows; r0 += B) {
      const int64_t r = r0 + B <= rows ? r0 : rows - B;
      for (int64_t c0 = 0; c0 < cols; c0 += B) {
        const int64_t c = c0 + B <= cols ? c0 : cols - B;
        transpose_block<T>(src + r * ls + c, ls, dst + c * ld + r, ld);
      }
    }
    return;
  }
  const int64_t rows_full = rows - rows % B, cols_full = cols - cols % B;
  for (int64_t r = 0; r < rows_full; r += B) {
    for (int64_t c = 0; c < cols_full; c += B) transpose_block<T>(src + r * ls + c, ls, dst + c * ld + r, ld);
    for (int64_t c = cols_full; c < cols; ++c)
      for (int64_t i = r; i < r + B; ++i) dst[c * ld + i] = src[i * ls + c];
  }
  for (int64_t r = rows_full; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = src[r * ls + c];
}

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
