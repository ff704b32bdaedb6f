// Argument checks and Params filling of the GEMM ops, shared by csrc/gemm.cpp and the test-only
// epilogue op (csrc/test_ops/gemm_epilogue.cpp, built by the tests, not into bigmodel._C).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdlib>
#include <functional>

#include "bigmodel/gemm.h"
#include "common.h"

namespace bigmodel::binding {

// A dense 2-D float32/float64 CPU tensor.
inline void check_matrix(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.layout() == at::kStrided, op, ": ", arg, " must be a dense (strided) tensor");
  TORCH_CHECK_VALUE(t.dim() == 2, op, ": ", arg, " must be a 2-D matrix, got a ", t.dim(), "-D tensor of shape ",
                    t.sizes());
  check_float_dtype(op, arg, t);
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", arg, " must be a CPU tensor, got one on ", t.device());
}

inline GemmOperand strided(const at::Tensor& t) {
  GemmOperand o;
  o.kind = GemmOperandKind::strided;
  o.data = t.const_data_ptr();
  o.rs = t.stride(0);
  o.cs = t.stride(1);
  return o;
}

// Whether two elements of a 2-D tensor may share memory (an expanded or as_strided view). The
// test is sufficient for safety: the inner (smaller-stride) dimension must fit inside one step
// of the outer one.
inline bool may_self_overlap(const at::Tensor& t) {
  int64_t s0 = t.size(0) > 1 ? std::abs(t.stride(0)) : -1, s1 = t.size(1) > 1 ? std::abs(t.stride(1)) : -1;
  if (s0 == 0 || s1 == 0) return true;
  if (s0 < 0 || s1 < 0) return false;  // at most one dimension has more than one element
  const int64_t inner = s0 < s1 ? s0 : s1, outer = s0 < s1 ? s1 : s0;
  const int64_t inner_size = s0 < s1 ? t.size(0) : t.size(1);
  return inner * inner_size > outer;
}

// Whether the memory spans of two tensors intersect (conservative: two interleaved views of one
// buffer count as overlapping).
inline bool spans_overlap(const at::Tensor& x, const at::Tensor& y) {
  if (x.numel() == 0 || y.numel() == 0) return false;
  auto span = [](const at::Tensor& t, uintptr_t& lo, uintptr_t& hi) {
    int64_t first = 0, last = 0;
    for (int64_t d = 0; d < t.dim(); ++d) {
      const int64_t reach = (t.size(d) - 1) * t.stride(d);
      (reach < 0 ? first : last) += reach;
    }
    const auto base = reinterpret_cast<uintptr_t>(t.const_data_ptr());
    lo = base + first * t.element_size();
    hi = base + (last + 1) * t.element_size();
  };
  uintptr_t xlo, xhi, ylo, yhi;
  span(x, xlo, xhi);
  span(y, ylo, yhi);
  return xlo < yhi && ylo < xhi;
}

// Checks for c = alpha * a @ b + beta * c in place (c of any non-overlapping strides) and the
// Params that compute it.
inline GemmParams inplace_params(const char* op, at::Tensor& c, const at::Tensor& a, const at::Tensor& b,
                                 double alpha, double beta) {
  check_matrix(op, "a", a);
  check_matrix(op, "b", b);
  check_matrix(op, "c", c);
  check_same(op, "b", b, "a", a);
  check_same(op, "c", c, "a", a);
  TORCH_CHECK_VALUE(a.size(1) == b.size(0), op, ": a has shape ", a.sizes(), " and b has shape ", b.sizes(),
                    "; b.size(0) must equal a.size(1)");
  TORCH_CHECK_VALUE(c.size(0) == a.size(0) && c.size(1) == b.size(1), op, ": c has shape ", c.sizes(),
                    " but a @ b has shape [", a.size(0), ", ", b.size(1), "]");
  TORCH_CHECK_VALUE(!may_self_overlap(c), op,
                    ": c has overlapping elements (e.g. an expanded tensor); it is written in place");
  TORCH_CHECK_VALUE(!spans_overlap(c, a) && !spans_overlap(c, b), op, ": c must not share memory with a or b");
  GemmParams p;
  p.dtype = to_dtype(c.scalar_type());
  p.M = a.size(0);
  p.N = b.size(1);
  p.K = a.size(1);
  p.a = strided(a);
  p.b = strided(b);
  p.c = c.mutable_data_ptr();
  p.rs_c = c.stride(0);
  p.cs_c = c.stride(1);
  p.alpha = alpha;
  p.beta = beta;
  p.num_threads = num_threads();
  return p;
}

using GemmKernel = Kernel<GemmParams>;

// gemm_pack's two CPU entry points: the buffer size, then the packing itself.
struct GemmPackKernel {
  std::function<int64_t(DType dtype, GemmSide side, int64_t outer, int64_t k_total)> bytes;
  std::function<GemmPacked(const GemmPackParams&)> pack;
};

}  // namespace bigmodel::binding
