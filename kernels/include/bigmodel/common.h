// Types shared by every kernel family. Framework-free: no torch header is included under kernels/.
//
// Params validation, one rule for every CPU family (pool, conv, gemm, lstm, attention): each
// plain entry point in bigmodel::cpu (kernels/cpu/<family>/<family>.cpp, gemm.cpp) checks its
// Params struct before it dispatches to the per-ISA code - dtype, layout / enum values, sizes
// (>= 0, windows / strides / groups >= 1, divisibility) and that every pointer the call reads or
// writes is non-null when the problem is not empty - and throws std::invalid_argument
// ("<family>: <what>", see kernels/cpu/check.h) before any thread starts. The checks are O(1) in
// the data (O(B) for LSTM lengths). What only the framework knows (tensor shapes, devices,
// strides matching the sizes) is the binding's job in csrc/; the kernels never read past the
// sizes they are given. The per-ISA *_kernel.cpp code assumes validated Params.
#pragma once

#include <cstdint>

namespace bigmodel {

enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
  }
  return "unknown";
}

// Memory layout of a 4-D activation tensor: NCHW-contiguous or NHWC-contiguous (channels_last).
enum class Layout : int { nchw = 0, nhwc = 1 };

}  // namespace bigmodel
