// Parameter checks for the CPU kernel entry points (the rule is in bigmodel/common.h): every
// family validates its Params where the plain entry point dispatches to the per-ISA code, and
// reports a problem as std::invalid_argument("<family>: <what>") before any thread starts.
// Not for *_kernel.cpp files (std::string must not be instantiated per ISA path, see simd.h).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bigmodel/common.h"

namespace bigmodel::cpu::check {

[[noreturn]] inline void fail(const char* family, const std::string& what) {
  throw std::invalid_argument(std::string(family) + ": " + what);
}

inline void float_dtype(const char* family, DType t) {
  if (t != DType::f32 && t != DType::f64)
    fail(family, std::string("dtype must be float32 or float64 on the CPU, got ") + dtype_name(t));
}

inline void layout(const char* family, Layout l) {
  if (l != Layout::nchw && l != Layout::nhwc) fail(family, "unknown layout");
}

// value >= lo, named in the message.
inline void at_least(const char* family, const char* name, int64_t value, int64_t lo) {
  if (value < lo) fail(family, std::string(name) + " must be >= " + std::to_string(lo) + ", got " + std::to_string(value));
}

// A pointer the kernel reads or writes (only when the problem is not empty).
inline void not_null(const char* family, const void* ptr, const char* name) {
  if (ptr == nullptr) fail(family, std::string(name) + " is a null pointer");
}

}  // namespace bigmodel::cpu::check
