// The small pieces every CPU kernel family needs, in one place: integer helpers, one RAII
// 64-byte aligned buffer, GEMM operand builders, the float/double switch and the thread-order
// reduction of per-thread partial sums.
//
// Usable from any CPU source, per-ISA *_kernel.cpp files included: nothing here depends on the
// ISA path, and everything has internal linkage (an anonymous namespace), so no inline function
// compiled with -mavx512f can be merged by the linker into a generic caller (see simd.h). Only
// raw pointers and ::operator new are used, no std:: containers, for the same reason.
//
// The API is stable: kernel families include this instead of defining their own copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "bigmodel/common.h"
#include "bigmodel/gemm.h"

namespace bigmodel::cpu {
namespace {

// ---- integer helpers -------------------------------------------------------------------------
// All for b > 0; ceil_div and round_up for a >= 0.
inline constexpr int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline constexpr int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
inline constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
// floor(a / b) and a mod b in [0, b) for any a.
inline constexpr int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline constexpr int64_t pos_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }
// A byte count rounded up to whole cache lines, and a pointer moved up to the next line.
inline constexpr int64_t align64(int64_t bytes) { return (bytes + 63) & ~int64_t(63); }
template <typename T>
inline T* align64(T* p) {
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
}

// Items [begin, end) of `total` for part `k` of `parts`: contiguous, sizes differ by at most 1.
inline void split_range(int64_t total, int k, int parts, int64_t& begin, int64_t& end) {
  const int64_t q = total / parts, r = total % parts;
  begin = k * q + min64(k, r);
  end = begin + q + (k < r ? 1 : 0);
}

// ---- the aligned buffer ----------------------------------------------------------------------
// Owns `bytes` of 64-byte aligned, uninitialised memory. Allocate it outside parallel regions
// (operator new may throw, and an exception must not leave an OpenMP region); carve it into
// per-thread slices with slice<T>(). Move-only.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t bytes) { reset(bytes); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), bytes_(o.bytes_) {
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = o.data_;
      bytes_ = o.bytes_;
      o.data_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  ~AlignedBuffer() { release(); }

  // Drops the old contents and holds `bytes` (>= 0) new ones.
  void reset(int64_t bytes) {
    release();
    data_ = static_cast<char*>(::operator new(static_cast<std::size_t>(bytes > 0 ? bytes : 1), std::align_val_t(64)));
    bytes_ = bytes;
  }
  char* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(data_);
  }
  // Slice `i` of equal slices of `elems` T each (keep elems * sizeof(T) a multiple of 64 for
  // every slice to stay aligned).
  template <typename T>
  T* slice(int64_t i, int64_t elems) const {
    return reinterpret_cast<T*>(data_) + i * elems;
  }

  // A buffer of n elements of T.
  template <typename T>
  static AlignedBuffer of(int64_t n) {
    return AlignedBuffer(n * static_cast<int64_t>(sizeof(T)));
  }

 private:
  void release() {
    if (data_) ::operator delete(data_, std::align_val_t(64));
    data_ = nullptr;
    bytes_ = 0;
  }
  char* data_ = nullptr;
  int64_t bytes_ = 0;
};

// ---- the float / double switch -----------------------------------------------------------------
template <typename T>
inline constexpr DType dtype_of() {
  return sizeof(T) == 8 ? DType::f64 : DType::f32;
}

// -infinity of T (the identity of max; what a masked score becomes).
template <typename T>
inline constexpr T neg_inf() {
  return -static_cast<T>(__builtin_huge_val());
}

// Runs `body` with T bound to double for DType::f64 and to float otherwise (callers validate the
// dtype first), returning what body returns:
//   void conv2d_direct_forward(const Conv2dParams& p) { BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { forward<T>(p); }); }
#define BIGMODEL_FLOAT_SWITCH(DTYPE, T, ...)        \
  [&] {                                             \
    if ((DTYPE) == ::bigmodel::DType::f64) {        \
      using T = double;                             \
      return __VA_ARGS__();                         \
    }                                               \
    using T = float;                                \
    return __VA_ARGS__();                           \
  }()

// ---- thread-order reduction --------------------------------------------------------------------
// Per-thread partial sums live in one buffer, part k at parts + k * stride. The sum runs over
// the parts in thread order, so the result is the same bit for bit on every run with the same
// thread count (the order of a floating-point sum matters).
template <typename T>
inline T sum_parts(const T* parts, int nparts, int64_t stride) {
  T s = T(0);
  for (int k = 0; k < nparts; ++k) s += parts[k * stride];
  return s;
}

// out[i] = sum over k < nparts of parts[k * stride + i], for i < n.
template <typename T>
inline void reduce_parts(T* out, const T* parts, int nparts, int64_t stride, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = sum_parts(parts + i, nparts, stride);
}

// ---- GEMM operand builders ---------------------------------------------------------------------
// Element (r, c) of op(X) at data[r * rs + c * cs] (gemm.h, "Operands and shapes").
inline GemmOperand strided(const void* data, int64_t rs, int64_t cs) {
  return {GemmOperandKind::strided, data, nullptr, rs, cs, nullptr};
}

// batch_count items, item t at items[t], each with the same strides.
inline GemmOperand batched(const void* const* items, int64_t rs, int64_t cs) {
  return {GemmOperandKind::batch, nullptr, items, rs, cs, nullptr};
}

inline GemmOperand packed(const GemmPacked* d) { return {GemmOperandKind::packed, nullptr, nullptr, 0, 0, d}; }

// C (M x N, C(i, j) at c[i * rs_c + j]) = alpha * op(A) op(B) + beta * C, for one batch item.
template <typename T>
inline GemmParams gemm_params(int64_t M, int64_t N, int64_t K, const GemmOperand& a, const GemmOperand& b, T* c,
                              int64_t rs_c, T alpha, T beta) {
  GemmParams g;
  g.dtype = dtype_of<T>();
  g.M = M;
  g.N = N;
  g.K = K;
  g.a = a;
  g.b = b;
  g.c = c;
  g.rs_c = rs_c;
  g.cs_c = 1;
  g.alpha = alpha;
  g.beta = beta;
  return g;
}

// What gemm_pack needs to pack the outer x K matrix src(o, k) = data[o * so + k * sk] as operand
// `side` (outer = M for A, N for B) into dst.
inline GemmPackParams pack_params(DType dtype, GemmSide side, int64_t outer, int64_t K, const void* data, int64_t so,
                                  int64_t sk, void* dst, int threads = 1) {
  GemmPackParams pp;
  pp.dtype = dtype;
  pp.side = side;
  pp.outer = outer;
  pp.K = K;
  pp.batch_count = 1;
  // GemmOperand strides are (row, column) of op(X): A is outer x K, B is K x outer.
  pp.src = side == GemmSide::a ? strided(data, so, sk) : strided(data, sk, so);
  pp.dst = dst;
  pp.num_threads = threads;
  return pp;
}

}  // namespace
}  // namespace bigmodel::cpu
