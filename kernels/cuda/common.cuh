// Helpers shared by the CUDA kernel families: element types and their accumulators, dtype
// dispatch, launch geometry, kernel launches and their checks, dynamic shared memory.
// Framework-free: CUDA runtime headers only. Every kernels/cuda/*.cu includes it.
//
// Host emulation: tests/cuda/thread_emulation.h defines BIGMODEL_CUDA_THREAD_EMULATION and stands
// in for the CUDA headers, for the launch in launch_kernel and for dynamic_smem, so that the
// kernels themselves compile unchanged as host C++ (one std::thread per CUDA thread).
#pragma once

#ifndef BIGMODEL_CUDA_THREAD_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "bigmodel/common.h"
#include "cuda/static_switch.h"

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

// The one dtype dispatcher: calls fn(TypeTag<T>{}) with T the CUDA element type of `dtype`.
// kWithDouble = false for families without float64 kernels (none are instantiated; float64 then
// throws like an unknown dtype). `op` names the operation in the error.
template <bool kWithDouble = true, typename Fn>
void dispatch_float(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(TypeTag<float>{});
    case DType::f16: return fn(TypeTag<__half>{});
    case DType::bf16: return fn(TypeTag<__nv_bfloat16>{});
    case DType::f64:
      if constexpr (kWithDouble) return fn(TypeTag<double>{});
      break;
  }
  throw std::invalid_argument(std::string(op) + ": unsupported dtype " + dtype_name(dtype) + " on CUDA");
}

BIGMODEL_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
BIGMODEL_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Launch geometry for a 1-D grid-stride loop over `total` items. The block count is capped (the
// x dimension allows 2^31-1 blocks; far fewer fill any GPU), so each thread may take several
// items; the loop counter is 64-bit, so it cannot overflow near 2^31.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 22;

inline unsigned int blocks_for(int64_t total, int threads = kThreads) {
  const int64_t blocks = ceil_div(total, threads);
  return static_cast<unsigned int>(blocks < 1 ? 1 : blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

#define BIGMODEL_CUDA_GRID_STRIDE_LOOP(i, total)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (total);      \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Throws std::runtime_error naming the call if a CUDA runtime call failed.
inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": CUDA call failed: " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
  }
}

// Throws std::runtime_error naming the kernel if its launch failed (bad configuration, no
// kernel image for this GPU's architecture, an earlier asynchronous error, ...).
inline void check_launch(const char* what) { check_cuda(cudaGetLastError(), what); }

// kernel<<<grid, block, smem, stream>>>(args...), then check_launch(what). Above the default
// 48 KiB of dynamic shared memory the kernel is first allowed to use `smem` bytes.
template <typename... Params, typename... Args>
void launch_kernel(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  if (smem > 48 * 1024) {
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
               what);
  }
#ifdef BIGMODEL_CUDA_THREAD_EMULATION
  emu::launch(kernel, grid, block, smem, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
  check_launch(what);
}

#ifndef BIGMODEL_CUDA_THREAD_EMULATION
// The block's dynamic shared memory (size: the launch's `smem`), as floats.
__device__ __forceinline__ float* dynamic_smem() {
  extern __shared__ __align__(16) float bigmodel_dynamic_smem[];
  return bigmodel_dynamic_smem;
}
#endif

}  // namespace bigmodel::cuda
