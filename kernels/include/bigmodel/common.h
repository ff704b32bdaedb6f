// Types shared by every kernel family. Framework-free: no torch header is included under kernels/.
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
