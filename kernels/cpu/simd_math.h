// Vector math on top of kernels/cpu/simd.h: lane-wise max, horizontal reductions and a fast
// exp, for the three ISA paths. Only for *_kernel.cpp files (same rules as simd.h: everything
// lives in the per-ISA anonymous namespace).
#pragma once

#include "cpu/simd.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

#if defined(BIGMODEL_BUILD_AVX512)

// The maskz forms with an all-ones mask are used throughout: GCC 12's plain forms expand to
// code it then warns about (-Wmaybe-uninitialized on _mm512_undefined_*).
constexpr __mmask16 kAll16 = 0xffff;
constexpr __mmask8 kAll8 = 0xff;

// max(a, b) lane by lane; a NaN in b is kept (b is the second operand of vmaxps).
BM_INLINE Vec<float> vec_max(Vec<float> a, Vec<float> b) { return {_mm512_maskz_max_ps(kAll16, a.v, b.v)}; }
BM_INLINE Vec<double> vec_max(Vec<double> a, Vec<double> b) { return {_mm512_maskz_max_pd(kAll8, a.v, b.v)}; }

// Horizontal reductions: halve to 256 bits, then as AVX2.
BM_INLINE __m256 half_max(Vec<float> a) {
  return _mm256_max_ps(_mm512_maskz_extractf32x8_ps(kAll8, a.v, 0), _mm512_maskz_extractf32x8_ps(kAll8, a.v, 1));
}
BM_INLINE __m256 half_add(Vec<float> a) {
  return _mm256_add_ps(_mm512_maskz_extractf32x8_ps(kAll8, a.v, 0), _mm512_maskz_extractf32x8_ps(kAll8, a.v, 1));
}
BM_INLINE __m256d half_max(Vec<double> a) {
  return _mm256_max_pd(_mm512_maskz_extractf64x4_pd(0xf, a.v, 0), _mm512_maskz_extractf64x4_pd(0xf, a.v, 1));
}
BM_INLINE __m256d half_add(Vec<double> a) {
  return _mm256_add_pd(_mm512_maskz_extractf64x4_pd(0xf, a.v, 0), _mm512_maskz_extractf64x4_pd(0xf, a.v, 1));
}
BM_INLINE float reduce256_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
BM_INLINE float reduce256_add(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
BM_INLINE double reduce256_max(__m256d v) {
  __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
  return _mm_cvtsd_f64(m);
}
BM_INLINE double reduce256_add(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}
BM_INLINE float reduce_max(Vec<float> a) { return reduce256_max(half_max(a)); }
BM_INLINE double reduce_max(Vec<double> a) { return reduce256_max(half_max(a)); }
BM_INLINE float reduce_add(Vec<float> a) { return reduce256_add(half_add(a)); }
BM_INLINE double reduce_add(Vec<double> a) { return reduce256_add(half_add(a)); }

// exp(x) to about 1 ulp for x in [-87.3, 88.3]; 0 below (so exp(-inf) = 0 exactly), NaN stays NaN.
// 1) n = round(x / ln2), r = x - n ln2 (ln2 split in two for precision)
// 2) exp(r) by Cephes' degree-6 polynomial on |r| <= ln2/2, then scaled by 2^n (vscalefps).
BM_INLINE Vec<float> vec_exp(Vec<float> x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.3762626647949f);
  const __m512 xc = _mm512_maskz_min_ps(kAll16, hi, _mm512_maskz_max_ps(kAll16, lo, x.v));  // NaN survives
  const __m512 n = _mm512_maskz_roundscale_ps(kAll16, _mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  y = _mm512_maskz_scalef_ps(kAll16, y, n);
  const __mmask16 under = _mm512_cmp_ps_mask(x.v, lo, _CMP_LT_OQ);
  return {_mm512_mask_blend_ps(under, y, _mm512_setzero_ps())};
}

#elif defined(BIGMODEL_BUILD_AVX2)

BM_INLINE Vec<float> vec_max(Vec<float> a, Vec<float> b) { return {_mm256_max_ps(a.v, b.v)}; }
BM_INLINE Vec<double> vec_max(Vec<double> a, Vec<double> b) { return {_mm256_max_pd(a.v, b.v)}; }
BM_INLINE float reduce_max(Vec<float> a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
BM_INLINE double reduce_max(Vec<double> a) {
  __m128d m = _mm_max_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
  return _mm_cvtsd_f64(m);
}
BM_INLINE float reduce_add(Vec<float> a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
BM_INLINE double reduce_add(Vec<double> a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

// As the AVX-512 version; 2^n is built in the exponent field, which the clamp keeps in range
// (n in [-126, 128): xc >= -87.3365 = ln 2^-126).
BM_INLINE Vec<float> vec_exp(Vec<float> x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x.v));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n as (n + 127) << 23; n = 128 (x near the top of the range) is split as 2^(n-1) * 2.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i big = _mm256_cmpgt_epi32(ni, _mm256_set1_epi32(127));
  const __m256i e = _mm256_sub_epi32(ni, _mm256_and_si256(big, _mm256_set1_epi32(1)));
  const __m256 pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  y = _mm256_mul_ps(y, pow2);
  y = _mm256_blendv_ps(y, _mm256_add_ps(y, y), _mm256_castsi256_ps(big));
  const __m256 under = _mm256_cmp_ps(x.v, lo, _CMP_LT_OQ);
  return {_mm256_andnot_ps(under, y)};
}

#else  // generic

template <typename T>
BM_INLINE Vec<T> vec_max(Vec<T> a, Vec<T> b) {
  return {a.v > b.v ? a.v : b.v};  // b when either is NaN, as vmaxps
}
template <typename T>
BM_INLINE T reduce_max(Vec<T> a) {
  return a.v;
}
template <typename T>
BM_INLINE T reduce_add(Vec<T> a) {
  return a.v;
}
BM_INLINE Vec<float> vec_exp(Vec<float> x) { return {std::exp(x.v)}; }

#endif

// float64: exact libm exp lane by lane (float64 is the correctness path, not the tuned one).
BM_INLINE Vec<double> vec_exp(Vec<double> x) {
  double lanes[Vec<double>::size];
  x.store(lanes);
  for (int i = 0; i < Vec<double>::size; ++i) lanes[i] = std::exp(lanes[i]);
  return Vec<double>::load(lanes);
}

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
