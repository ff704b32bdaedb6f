// The SIMD layer that per-ISA kernels are written against.
//
// Only files named *_kernel.cpp include this. setup.py compiles each of them three times, with
// -DBIGMODEL_BUILD_AVX512, -DBIGMODEL_BUILD_AVX2 or -DBIGMODEL_BUILD_GENERIC and that path's
// -m flags, so one source gives three objects. Everything such a file defines must live inside
// `namespace bigmodel::cpu::BIGMODEL_ISA_NS` (three distinct namespaces, no symbol clashes), and
// it must not instantiate std:: templates that other translation units also instantiate (an
// inline function compiled with -mavx512f could be picked by the linker for a generic caller).
// Keep these files to raw loops over pointers, this header and <cmath>/<cstdint>.
//
// Vec<T> is one register of T: 16/8 lanes (AVX-512), 8/4 (AVX2), 1 (generic, plain C++ that
// runs on any CPU). Masks are per-lane predicates of the same width.
#pragma once

#include <cmath>
#include <cstdint>

// GCC 12 reports -Wmaybe-uninitialized inside the AVX-512 intrinsic headers (the self-initialised
// _mm512_undefined_* they use; GCC bug 105593). The warning is attributed to the header's lines,
// so it is silenced around the include only.
#if defined(BIGMODEL_BUILD_AVX512) || defined(BIGMODEL_BUILD_AVX2)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif

#if defined(BIGMODEL_BUILD_AVX512)
#define BIGMODEL_ISA_NS avx512
#elif defined(BIGMODEL_BUILD_AVX2)
#define BIGMODEL_ISA_NS avx2
#elif defined(BIGMODEL_BUILD_GENERIC)
#define BIGMODEL_ISA_NS generic
#else
#error "simd.h is only for *_kernel.cpp files, which setup.py compiles once per ISA path"
#endif

#if defined(__GNUC__)
#define BM_INLINE inline __attribute__((always_inline))
#else
#define BM_INLINE inline
#endif

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

template <typename T>
struct Vec;

#if defined(BIGMODEL_BUILD_AVX512)

template <>
struct Vec<float> {
  static constexpr int size = 16;
  using Mask = __mmask16;
  __m512 v;
  static BM_INLINE Mask tail(int n) { return static_cast<Mask>((1u << n) - 1u); }  // n in [0, 16]
  static BM_INLINE Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static BM_INLINE Vec load(const float* p, int n) {
    return {n == size ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(tail(n), p)};
  }
  // Lanes i < n read p[i * stride], the rest are zero. Reads nothing else.
  static BM_INLINE Vec load_strided(const float* p, int64_t stride, int n = size) {
    if (stride == 1) return load(p, n);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i off = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int>(stride)));
    return {_mm512_mask_i32gather_ps(_mm512_setzero_ps(), tail(n), off, p, 4)};
  }
  // Lane i reads p[2 i]; reads all of p[0 .. 2 size).
  static BM_INLINE Vec load_even(const float* p) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return {_mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 16))};
  }
  // Lanes i < n read p[2 i]; reads only p[0 .. 2n - 1).
  static BM_INLINE Vec load_even(const float* p, int n) {
    const int m = 2 * n - 1;
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 a = _mm512_maskz_loadu_ps(tail(m < 16 ? m : 16), p);
    const __m512 b = _mm512_maskz_loadu_ps(tail(m > 16 ? m - 16 : 0), p + 16);
    return {_mm512_permutex2var_ps(a, idx, b)};
  }
  // p[2 i] += even[i], p[2 i + 1] += odd[i] for every lane i.
  static BM_INLINE void add_interleaved(float* p, Vec even, Vec odd) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), _mm512_permutex2var_ps(even.v, lo, odd.v)));
    _mm512_storeu_ps(p + 16, _mm512_add_ps(_mm512_loadu_ps(p + 16), _mm512_permutex2var_ps(even.v, hi, odd.v)));
  }
  // The same, touching only p[0 .. m), m <= 2 size.
  static BM_INLINE void add_interleaved(float* p, Vec even, Vec odd, int m) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const Mask ma = tail(m < 16 ? m : 16), mb = tail(m > 16 ? m - 16 : 0);
    _mm512_mask_storeu_ps(p, ma, _mm512_add_ps(_mm512_maskz_loadu_ps(ma, p), _mm512_permutex2var_ps(even.v, lo, odd.v)));
    _mm512_mask_storeu_ps(p + 16, mb,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(mb, p + 16), _mm512_permutex2var_ps(even.v, hi, odd.v)));
  }
  static BM_INLINE Vec broadcast(float x) { return {_mm512_set1_ps(x)}; }
  static BM_INLINE Vec zero() { return {_mm512_setzero_ps()}; }
  BM_INLINE void store(float* p) const { _mm512_storeu_ps(p, v); }
  BM_INLINE void store(float* p, int n) const {
    if (n == size)
      _mm512_storeu_ps(p, v);
    else
      _mm512_mask_storeu_ps(p, tail(n), v);
  }
  friend BM_INLINE Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend BM_INLINE Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend BM_INLINE Vec operator*(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend BM_INLINE Vec operator/(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
  // 1 / q within ~2 ulp: the 14-bit estimate and one Newton step (no divider: ~5x the throughput).
  static BM_INLINE Vec recip(Vec q) {
    const __m512 r = _mm512_rcp14_ps(q.v);
    return {_mm512_mul_ps(r, _mm512_fnmadd_ps(q.v, r, _mm512_set1_ps(2.0f)))};
  }
  static BM_INLINE Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  // max(a, b) lane by lane; b where either is NaN (so max(0, x) keeps a NaN x).
  static BM_INLINE Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
  static BM_INLINE Mask gt(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
  static BM_INLINE Mask eq(Vec a, Vec b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ); }
  static BM_INLINE Mask isnan(Vec a) { return _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q); }
  static BM_INLINE Mask mask_or(Mask a, Mask b) { return static_cast<Mask>(a | b); }
  // m ? a : b, lane by lane.
  static BM_INLINE Vec select(Mask m, Vec a, Vec b) { return {_mm512_mask_blend_ps(m, b.v, a.v)}; }  // r[0 .. size) are the rows of a size x size block; afterwards r[j] holds its column j.
  static BM_INLINE void transpose(Vec* r) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {  // per 128-bit lane: row pairs interleaved
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
    }
    __m512 u[16];
    for (int i = 0; i < 4; ++i) {  // lane L of u[4i + j]: rows 4i..4i+3 at column 4L + j
      const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
      const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
      u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
      u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
      u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
      u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (int j = 0; j < 4; ++j) {  // gather the four 128-bit lanes of each column
      t[j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
      t[4 + j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);
      t[8 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
      t[12 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
    }
    for (int j = 0; j < 4; ++j) {
      r[j].v = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
      r[8 + j].v = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
      r[4 + j].v = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
      r[12 + j].v = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xdd);
    }
  }
};

template <>
struct Vec<double> {
  static constexpr int size = 8;
  using Mask = __mmask8;
  __m512d v;
  static BM_INLINE Mask tail(int n) { return static_cast<Mask>((1u << n) - 1u); }
  static BM_INLINE Vec load(const double* p) { return {_mm512_loadu_pd(p)}; }
  static BM_INLINE Vec load(const double* p, int n) {
    return {n == size ? _mm512_loadu_pd(p) : _mm512_maskz_loadu_pd(tail(n), p)};
  }
  static BM_INLINE Vec load_strided(const double* p, int64_t stride, int n = size) {
    if (stride == 1) return load(p, n);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i off = _mm256_mullo_epi32(lane, _mm256_set1_epi32(static_cast<int>(stride)));
    return {_mm512_mask_i32gather_pd(_mm512_setzero_pd(), tail(n), off, p, 8)};
  }
  static BM_INLINE Vec load_even(const double* p) {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return {_mm512_permutex2var_pd(_mm512_loadu_pd(p), idx, _mm512_loadu_pd(p + 8))};
  }
  static BM_INLINE Vec load_even(const double* p, int n) {
    const int m = 2 * n - 1;
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512d a = _mm512_maskz_loadu_pd(tail(m < 8 ? m : 8), p);
    const __m512d b = _mm512_maskz_loadu_pd(tail(m > 8 ? m - 8 : 0), p + 8);
    return {_mm512_permutex2var_pd(a, idx, b)};
  }
  static BM_INLINE void add_interleaved(double* p, Vec even, Vec odd) {
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), _mm512_permutex2var_pd(even.v, lo, odd.v)));
    _mm512_storeu_pd(p + 8, _mm512_add_pd(_mm512_loadu_pd(p + 8), _mm512_permutex2var_pd(even.v, hi, odd.v)));
  }
  static BM_INLINE void add_interleaved(double* p, Vec even, Vec odd, int m) {
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    const Mask ma = tail(m < 8 ? m : 8), mb = tail(m > 8 ? m - 8 : 0);
    _mm512_mask_storeu_pd(p, ma, _mm512_add_pd(_mm512_maskz_loadu_pd(ma, p), _mm512_permutex2var_pd(even.v, lo, odd.v)));
    _mm512_mask_storeu_pd(p + 8, mb,
                          _mm512_add_pd(_mm512_maskz_loadu_pd(mb, p + 8), _mm512_permutex2var_pd(even.v, hi, odd.v)));
  }
  static BM_INLINE Vec broadcast(double x) { return {_mm512_set1_pd(x)}; }
  static BM_INLINE Vec zero() { return {_mm512_setzero_pd()}; }
  BM_INLINE void store(double* p) const { _mm512_storeu_pd(p, v); }
  BM_INLINE void store(double* p, int n) const {
    if (n == size)
      _mm512_storeu_pd(p, v);
    else
      _mm512_mask_storeu_pd(p, tail(n), v);
  }
  friend BM_INLINE Vec operator+(Vec a, Vec b) { return {_mm512_add_pd(a.v, b.v)}; }
  friend BM_INLINE Vec operator-(Vec a, Vec b) { return {_mm512_sub_pd(a.v, b.v)}; }
  friend BM_INLINE Vec operator*(Vec a, Vec b) { return {_mm512_mul_pd(a.v, b.v)}; }
  friend BM_INLINE Vec operator/(Vec a, Vec b) { return {_mm512_div_pd(a.v, b.v)}; }
  static BM_INLINE Vec recip(Vec q) { return {_mm512_div_pd(_mm512_set1_pd(1.0), q.v)}; }  // exact
  static BM_INLINE Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
  // max(a, b) lane by lane; b where either is NaN (so max(0, x) keeps a NaN x).
  static BM_INLINE Vec max(Vec a, Vec b) { return {_mm512_max_pd(a.v, b.v)}; }
  static BM_INLINE Mask gt(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ); }
  static BM_INLINE Mask eq(Vec a, Vec b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_EQ_OQ); }
  static BM_INLINE Mask isnan(Vec a) { return _mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q); }
  static BM_INLINE Mask mask_or(Mask a, Mask b) { return static_cast<Mask>(a | b); }
  static BM_INLINE Vec select(Mask m, Vec a, Vec b) { return {_mm512_mask_blend_pd(m, b.v, a.v)}; }  static BM_INLINE void transpose(Vec* r) {
    __m512d x[8], y[8];
    for (int i = 0; i < 4; ++i) {  // lane L of x[2i + j]: rows 2i, 2i+1 at column 2L + j
      x[2 * i] = _mm512_unpacklo_pd(r[2 * i].v, r[2 * i + 1].v);
      x[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i].v, r[2 * i + 1].v);
    }
    for (int j = 0; j < 2; ++j) {
      y[j] = _mm512_shuffle_f64x2(x[j], x[2 + j], 0x88);
      y[2 + j] = _mm512_shuffle_f64x2(x[j], x[2 + j], 0xdd);
      y[4 + j] = _mm512_shuffle_f64x2(x[4 + j], x[6 + j], 0x88);
      y[6 + j] = _mm512_shuffle_f64x2(x[4 + j], x[6 + j], 0xdd);
    }
    for (int j = 0; j < 2; ++j) {
      r[j].v = _mm512_shuffle_f64x2(y[j], y[4 + j], 0x88);
      r[4 + j].v = _mm512_shuffle_f64x2(y[j], y[4 + j], 0xdd);
      r[2 + j].v = _mm512_shuffle_f64x2(y[2 + j], y[6 + j], 0x88);
      r[6 + j].v = _mm512_shuffle_f64x2(y[2 + j], y[6 + j], 0xdd);
    }
  }
};

#elif defined(BIGMODEL_BUILD_AVX2)

// Masks are full-width vectors of all-ones / all-zeros lanes, as the AVX compare instructions
// produce them.
BM_INLINE __m256i avx2_tail_epi32(int n) {  // lanes < n all-ones, n in [0, 8]
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
}
BM_INLINE __m256i avx2_tail_epi64(int n) {  // n in [0, 4]
  const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lane);
}

template <>
struct Vec<float> {
  static constexpr int size = 8;
  using Mask = __m256;
  __m256 v;
  static BM_INLINE Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  // Masked moves are slow on some CPUs (microcoded on AMD), so full vectors take the plain path.
  static BM_INLINE Vec load(const float* p, int n) {
    return {n == size ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, avx2_tail_epi32(n))};
  }
  static BM_INLINE Vec load_strided(const float* p, int64_t stride, int n = size) {
    if (stride == 1) return load(p, n);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i off = _mm256_mullo_epi32(lane, _mm256_set1_epi32(static_cast<int>(stride)));
    return {_mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, off, _mm256_castsi256_ps(avx2_tail_epi32(n)), 4)};
  }
  static BM_INLINE Vec load_even(const float* p) {
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> reorder 64-bit pairs to [a0 a2 a4 a6 | b0 b2 b4 b6]
    const __m256 t = _mm256_shuffle_ps(a, b, 0x88);
    return {_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xd8))};
  }
  static BM_INLINE Vec load_even(const float* p, int n) {
    const int m = 2 * n - 1;
    const __m256 a = _mm256_maskload_ps(p, avx2_tail_epi32(m < 8 ? m : 8));
    const __m256 b = _mm256_maskload_ps(p + 8, avx2_tail_epi32(m > 8 ? m - 8 : 0));
    const __m256 t = _mm256_shuffle_ps(a, b, 0x88);
    return {_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xd8))};
  }
  static BM_INLINE void add_interleaved(float* p, Vec even, Vec odd) {
    const __m256 lo = _mm256_unpacklo_ps(even.v, odd.v);  // e0 o0 e1 o1 | e4 o4 e5 o5
    const __m256 hi = _mm256_unpackhi_ps(even.v, odd.v);  // e2 o2 e3 o3 | e6 o6 e7 o7
    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_permute2f128_ps(lo, hi, 0x20)));
    _mm256_storeu_ps(p + 8, _mm256_add_ps(_mm256_loadu_ps(p + 8), _mm256_permute2f128_ps(lo, hi, 0x31)));
  }
  static BM_INLINE void add_interleaved(float* p, Vec even, Vec odd, int m) {
    const __m256 lo = _mm256_unpacklo_ps(even.v, odd.v);
    const __m256 hi = _mm256_unpackhi_ps(even.v, odd.v);
    const __m256i ma = avx2_tail_epi32(m < 8 ? m : 8), mb = avx2_tail_epi32(m > 8 ? m - 8 : 0);
    _mm256_maskstore_ps(p, ma, _mm256_add_ps(_mm256_maskload_ps(p, ma), _mm256_permute2f128_ps(lo, hi, 0x20)));
    _mm256_maskstore_ps(p + 8, mb, _mm256_add_ps(_mm256_maskload_ps(p + 8, mb), _mm256_permute2f128_ps(lo, hi, 0x31)));
  }
  static BM_INLINE Vec broadcast(float x) { return {_mm256_set1_ps(x)}; }
  static BM_INLINE Vec zero() { return {_mm256_setzero_ps()}; }
  BM_INLINE void store(float* p) const { _mm256_storeu_ps(p, v); }
  BM_INLINE void store(float* p, int n) const {
    if (n == size)
      _mm256_storeu_ps(p, v);
    else
      _mm256_maskstore_ps(p, avx2_tail_epi32(n), v);
  }
  friend BM_INLINE Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend BM_INLINE Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend BM_INLINE Vec operator*(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend BM_INLINE Vec operator/(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
  // 1 / q within a few ulp: the 12-bit estimate and one Newton step.
  static BM_INLINE Vec recip(Vec q) {
    const __m256 r = _mm256_rcp_ps(q.v);
    return {_mm256_mul_ps(r, _mm256_fnmadd_ps(q.v, r, _mm256_set1_ps(2.0f)))};
  }
  static BM_INLINE Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  // max(a, b) lane by lane; b where either is NaN (so max(0, x) keeps a NaN x).
  static BM_INLINE Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
  static BM_INLINE Mask gt(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ); }
  static BM_INLINE Mask eq(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ); }
  static BM_INLINE Mask isnan(Vec a) { return _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q); }
  static BM_INLINE Mask mask_or(Mask a, Mask b) { return _mm256_or_ps(a, b); }
  static BM_INLINE Vec select(Mask m, Vec a, Vec b) { return {_mm256_blendv_ps(b.v, a.v, m)}; }  static BM_INLINE void transpose(Vec* r) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
    }
    for (int i = 0; i < 2; ++i) {  // lane L of u[4i + j]: rows 4i..4i+3 at column 4L + j
      const __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 2]);
      const __m256d c = _mm256_castps_pd(t[4 * i + 1]), d = _mm256_castps_pd(t[4 * i + 3]);
      u[4 * i] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
      u[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
      u[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(c, d));
      u[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(c, d));
    }
    for (int j = 0; j < 4; ++j) {
      r[j].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
      r[4 + j].v = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
  }
};

template <>
struct Vec<double> {
  static constexpr int size = 4;
  using Mask = __m256d;
  __m256d v;
  static BM_INLINE Vec load(const double* p) { return {_mm256_loadu_pd(p)}; }
  static BM_INLINE Vec load(const double* p, int n) {
    return {n == size ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, avx2_tail_epi64(n))};
  }
  static BM_INLINE Vec load_strided(const double* p, int64_t stride, int n = size) {
    if (stride == 1) return load(p, n);
    const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
    const __m128i off = _mm_mullo_epi32(lane, _mm_set1_epi32(static_cast<int>(stride)));
    return {_mm256_mask_i32gather_pd(_mm256_setzero_pd(), p, off, _mm256_castsi256_pd(avx2_tail_epi64(n)), 8)};
  }
  static BM_INLINE Vec load_even(const double* p) {
    const __m256d a = _mm256_loadu_pd(p), b = _mm256_loadu_pd(p + 4);
    const __m256d t = _mm256_unpacklo_pd(a, b);  // a0 b0 | a2 b2
    return {_mm256_permute4x64_pd(t, 0xd8)};    // a0 a2 b0 b2
  }
  static BM_INLINE Vec load_even(const double* p, int n) {
    const int m = 2 * n - 1;
    const __m256d a = _mm256_maskload_pd(p, avx2_tail_epi64(m < 4 ? m : 4));
    const __m256d b = _mm256_maskload_pd(p + 4, avx2_tail_epi64(m > 4 ? m - 4 : 0));
    return {_mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xd8)};
  }
  static BM_INLINE void add_interleaved(double* p, Vec even, Vec odd) {
    const __m256d lo = _mm256_unpacklo_pd(even.v, odd.v);  // e0 o0 | e2 o2
    const __m256d hi = _mm256_unpackhi_pd(even.v, odd.v);  // e1 o1 | e3 o3
    _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), _mm256_permute2f128_pd(lo, hi, 0x20)));
    _mm256_storeu_pd(p + 4, _mm256_add_pd(_mm256_loadu_pd(p + 4), _mm256_permute2f128_pd(lo, hi, 0x31)));
  }
  static BM_INLINE void add_interleaved(double* p, Vec even, Vec odd, int m) {
    const __m256d lo = _mm256_unpacklo_pd(even.v, odd.v);
    const __m256d hi = _mm256_unpackhi_pd(even.v, odd.v);
    const __m256i ma = avx2_tail_epi64(m < 4 ? m : 4), mb = avx2_tail_epi64(m > 4 ? m - 4 : 0);
    _mm256_maskstore_pd(p, ma, _mm256_add_pd(_mm256_maskload_pd(p, ma), _mm256_permute2f128_pd(lo, hi, 0x20)));
    _mm256_maskstore_pd(p + 4, mb, _mm256_add_pd(_mm256_maskload_pd(p + 4, mb), _mm256_permute2f128_pd(lo, hi, 0x31)));
  }
  static BM_INLINE Vec broadcast(double x) { return {_mm256_set1_pd(x)}; }
  static BM_INLINE Vec zero() { return {_mm256_setzero_pd()}; }
  BM_INLINE void store(double* p) const { _mm256_storeu_pd(p, v); }
  BM_INLINE void store(double* p, int n) const {
    if (n == size)
      _mm256_storeu_pd(p, v);
    else
      _mm256_maskstore_pd(p, avx2_tail_epi64(n), v);
  }
  friend BM_INLINE Vec operator+(Vec a, Vec b) { return {_mm256_add_pd(a.v, b.v)}; }
  friend BM_INLINE Vec operator-(Vec a, Vec b) { return {_mm256_sub_pd(a.v, b.v)}; }
  friend BM_INLINE Vec operator*(Vec a, Vec b) { return {_mm256_mul_pd(a.v, b.v)}; }
  friend BM_INLINE Vec operator/(Vec a, Vec b) { return {_mm256_div_pd(a.v, b.v)}; }
  static BM_INLINE Vec recip(Vec q) { return {_mm256_div_pd(_mm256_set1_pd(1.0), q.v)}; }  // exact
  static BM_INLINE Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
  // max(a, b) lane by lane; b where either is NaN (so max(0, x) keeps a NaN x).
  static BM_INLINE Vec max(Vec a, Vec b) { return {_mm256_max_pd(a.v, b.v)}; }
  static BM_INLINE Mask gt(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ); }
  static BM_INLINE Mask eq(Vec a, Vec b) { return _mm256_cmp_pd(a.v, b.v, _CMP_EQ_OQ); }
  static BM_INLINE Mask isnan(Vec a) { return _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q); }
  static BM_INLINE Mask mask_or(Mask a, Mask b) { return _mm256_or_pd(a, b); }
  static BM_INLINE Vec select(Mask m, Vec a, Vec b) { return {_mm256_blendv_pd(b.v, a.v, m)}; }  static BM_INLINE void transpose(Vec* r) {
    const __m256d t0 = _mm256_unpacklo_pd(r[0].v, r[1].v), t1 = _mm256_unpackhi_pd(r[0].v, r[1].v);
    const __m256d t2 = _mm256_unpacklo_pd(r[2].v, r[3].v), t3 = _mm256_unpackhi_pd(r[2].v, r[3].v);
    r[0].v = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1].v = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2].v = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3].v = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
};

#else  // generic: one lane of plain C++

template <typename T>
struct Vec {
  static constexpr int size = 1;
  using Mask = bool;
  T v;
  static BM_INLINE Vec load(const T* p) { return {*p}; }
  static BM_INLINE Vec load(const T* p, int n) { return {n > 0 ? *p : T(0)}; }
  static BM_INLINE Vec load_strided(const T* p, int64_t, int n = size) { return load(p, n); }
  static BM_INLINE Vec load_even(const T* p) { return {*p}; }
  static BM_INLINE Vec load_even(const T* p, int n) { return {n > 0 ? *p : T(0)}; }
  static BM_INLINE void add_interleaved(T* p, Vec even, Vec odd) {
    p[0] += even.v;
    p[1] += odd.v;
  }
  static BM_INLINE void add_interleaved(T* p, Vec even, Vec odd, int m) {
    if (m > 0) p[0] += even.v;
    if (m > 1) p[1] += odd.v;
  }
  static BM_INLINE Vec broadcast(T x) { return {x}; }
  static BM_INLINE Vec zero() { return {T(0)}; }
  BM_INLINE void store(T* p) const { *p = v; }
  BM_INLINE void store(T* p, int n) const {
    if (n > 0) *p = v;
  }
  friend BM_INLINE Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
  friend BM_INLINE Vec operator-(Vec a, Vec b) { return {a.v - b.v}; }
  friend BM_INLINE Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }
  friend BM_INLINE Vec operator/(Vec a, Vec b) { return {a.v / b.v}; }
  static BM_INLINE Vec recip(Vec q) { return {T(1) / q.v}; }  // exact
  static BM_INLINE Vec fma(Vec a, Vec b, Vec c) { return {a.v * b.v + c.v}; }
  static BM_INLINE Vec max(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
  static BM_INLINE Mask gt(Vec a, Vec b) { return a.v > b.v; }
  static BM_INLINE Mask eq(Vec a, Vec b) { return a.v == b.v; }
  static BM_INLINE Mask isnan(Vec a) { return a.v != a.v; }
  static BM_INLINE Mask mask_or(Mask a, Mask b) { return a || b; }
  static BM_INLINE Vec select(Mask m, Vec a, Vec b) { return m ? a : b; }  static BM_INLINE void transpose(Vec*) {}  // a 1 x 1 block
};

#endif

}  // namespace
}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
