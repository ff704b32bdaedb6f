// Helpers shared by the torch bindings: the registration pattern (Kernel, bind; see
// csrc/registration.cpp), dtype mapping, argument checks with messages that name the argument,
// and running a framework-free kernel with its exceptions turned into torch's.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "bigmodel/common.h"

namespace bigmodel::binding {

// A backend's kernel entry point for one Params struct. The CPU passes its cpu:: function as is;
// the CUDA backend wraps its cuda:: launcher (stream, workspace) with csrc/cuda/launch.h.
template <typename Params>
using Kernel = std::function<void(const Params&)>;

// The guard a backend opens around every call, constructed from the op's arguments: none on the
// CPU; on CUDA, the device of the first CUDA tensor (csrc/cuda/launch.h).
struct NoDeviceGuard {
  template <typename... Args>
  explicit NoDeviceGuard(const Args&...) {}
};

// `op` with its leading kernel argument bound: a callable whose signature is the op's schema,
// for m.impl. Every torch-facing op function takes its backend's kernel(s) first, then the
// schema's arguments in order, and does all argument checking itself (once, for every backend).
template <typename Guard = NoDeviceGuard, typename R, typename K, typename... Args>
auto bind(R (*op)(const K&, Args...), std::type_identity_t<K> kernel) {
  return [op, kernel = std::move(kernel)](Args... args) -> R {
    const Guard guard(args...);
    return op(kernel, std::forward<Args>(args)...);
  };
}

inline DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::f32;
    case at::kDouble: return DType::f64;
    case at::kHalf: return DType::f16;
    case at::kBFloat16: return DType::bf16;
    default: TORCH_CHECK(false, "unsupported dtype ", t);
  }
}

// float32/float64 on CPU; float32/float64/float16/bfloat16 on CUDA.
inline void check_float_dtype(const char* op, const char* arg, const at::Tensor& t) {
  const auto st = t.scalar_type();
  const bool ok = st == at::kFloat || st == at::kDouble ||
                  (t.is_cuda() && (st == at::kHalf || st == at::kBFloat16));
  TORCH_CHECK_TYPE(ok, op, ": ", arg, " must be ",
                   t.is_cuda() ? "float32, float64, float16 or bfloat16 on CUDA" : "float32 or float64 on CPU",
                   ", got ", st);
}

inline void check_same(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                       const at::Tensor& ref) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": ", arg, " is on ", t.device(), " but ", ref_arg,
                    " is on ", ref.device(), "; move them to the same device");
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", arg, " has dtype ", t.scalar_type(),
                   " but ", ref_arg, " has dtype ", ref.scalar_type());
}

inline int num_threads() {
  const int n = at::get_num_threads();
  return n < 1 ? 1 : n;
}

// at::empty, plus a hint that a large CPU buffer be backed by transparent huge pages. A fresh
// multi-megabyte allocation is mmap'ed memory whose first write page-faults 4 KiB at a time; for
// a backward pass that writes a 50 MB gradient those faults cost more than the kernel itself.
// Where THP is off or in "never" mode the hint is a no-op.
inline at::Tensor empty_activation(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const size_t bytes = t.nbytes();
  if (t.device().is_cpu() && bytes >= 4 * kHuge) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1), hi = (begin + bytes) & ~(kHuge - 1);
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  }
#endif
  return t;
}

// "(a, b)", for messages about (height, width) pairs.
inline std::string pair_str(int64_t a, int64_t b) {
  std::ostringstream os;
  os << "(" << a << ", " << b << ")";
  return os.str();
}

// A 2-D size argument (kernel_size, stride, padding, dilation) as (h, w); one element means both.
inline void two_ints(const char* op, const char* arg, at::IntArrayRef v, int64_t& h, int64_t& w) {
  TORCH_CHECK_VALUE(v.size() == 1 || v.size() == 2, op, ": ", arg, " must be an int or a pair of ints, got ",
                    v.size(), " values");
  h = v[0];
  w = v.size() == 2 ? v[1] : v[0];
}

inline Layout layout_of(at::MemoryFormat fmt) {
  return fmt == at::MemoryFormat::ChannelsLast ? Layout::nhwc : Layout::nchw;
}

// Runs a kernel; std::invalid_argument (bad BIGMODEL_ISA, bad sizes) becomes ValueError and
// other std::exception a RuntimeError, both with the kernel's message.
template <typename F>
void run_kernel(F&& f) {
  try {
    f();
  } catch (const c10::Error&) {
    throw;
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, e.what());
  }
}

}  // namespace bigmodel::binding
