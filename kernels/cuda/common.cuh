// Helpers shared by the CUDA kernel families: element types and their accumulators, dtype
// dispatch, launch geometry and launch checks. Framework-free: CUDA runtime headers only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bigmodel/common.h"

// Device code that is also host-callable, so that tests can run a kernel's per-element body on
// the CPU (tests/cuda/) where no GPU is available.
#define BIGMODEL_HD __host__ __device__ __forceinline__

namespace bigmodel::cuda {

// Element type T, its accumulator type (float for the 16-bit types, else T itself) and exact
// conversions between them. torch's CUDA extension flags disable the implicit __half /
// __nv_bfloat16 conversions, hence the intrinsics.
template <typename T>
struct Num {
  using acc = T;
  static BIGMODEL_HD acc to_acc(T v) { return v; }
  static BIGMODEL_HD T from_acc(acc v) { return v; }
};
template <>
struct Num<__half> {
  using acc = float;
  static BIGMODEL_HD float to_acc(__half v) { return __half2float(v); }
  static BIGMODEL_HD __half from_acc(float v) { return __float2half_rn(v); }
};
template <>
struct Num<__nv_bfloat16> {
  using acc = float;
  static BIGMODEL_HD float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
  static BIGMODEL_HD __nv_bfloat16 from_acc(float v) { return __float2bfloat16_rn(v); }
};

template <typename T>
BIGMODEL_HD bool is_nan(T v) {
  return v != v;  // no fast-math here, so this is exact for float and double
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) with T the CUDA element type of `dtype`.
template <typename Fn>
void dispatch_float(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32: fn(TypeTag<float>{}); return;
    case DType::f64: fn(TypeTag<double>{}); return;
    case DType::f16: fn(TypeTag<__half>{}); return;
    case DType::bf16: fn(TypeTag<__nv_bfloat16>{}); return;
  }
  throw std::invalid_argument(std::string("unsupported dtype ") + dtype_name(dtype));
}

// Launch geometry for a 1-D grid-stride loop over `total` items. The block count is capped (the
// x dimension allows 2^31-1 blocks; far fewer fill any GPU), so each thread may take several
// items; the loop counter is 64-bit, so it cannot overflow near 2^31.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 22;

inline unsigned int blocks_for(int64_t total, int threads = kThreads) {
  const int64_t blocks = (total + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

#define BIGMODEL_CUDA_GRID_STRIDE_LOOP(i, total)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (total);      \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Throws std::runtime_error naming the kernel if its launch failed (bad configuration, no
// kernel image for this GPU's architecture, an earlier asynchronous error, ...).
inline void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": CUDA kernel launch failed: " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
  }
}

}  // namespace bigmodel::cuda
