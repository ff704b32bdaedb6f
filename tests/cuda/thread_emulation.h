// Test harness: a thread-level CPU emulation of the CUDA features the attention kernels
// (kernels/cuda/attention_*.cu) use, so that they (shared-memory tiles, barriers, warp shuffles
// and all) can be run and checked on a machine without a GPU. Included before the kernel sources
// (tests/cuda/attention_emulation.cu, compiled as host C++): it defines
// BIGMODEL_CUDA_THREAD_EMULATION, which makes kernels/cuda/common.cuh leave out the CUDA headers
// and route launch_kernel to emu::launch and dynamic_smem() to emu::smem_buf. Not part of the
// package.
//
// One std::thread per CUDA thread; blocks run one after another (shared memory is one static
// buffer, filled with NaN before each block so that reads of unwritten shared memory show);
// __syncthreads and __syncwarp are barriers; shuffles go through a per-warp exchange array.
// A kernel that skips a barrier on some threads deadlocks here as it would hang on a GPU.
#pragma once
#define BIGMODEL_CUDA_THREAD_EMULATION 1
#include <immintrin.h>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

struct __half { uint16_t bits; };
struct __nv_bfloat16 { uint16_t bits; };
inline float __half2float(__half h) { return _cvtsh_ss(h.bits); }
inline __half __float2half_rn(float f) { return {static_cast<uint16_t>(_cvtss_sh(f, 0))}; }
inline float __bfloat162float(__nv_bfloat16 h) { uint32_t u = uint32_t(h.bits) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return {static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fff + ((u >> 16) & 1);
  return {static_cast<uint16_t>(u >> 16)};
}

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline const char* cudaGetErrorName(cudaError_t) { return "cudaSuccess"; }
inline const char* cudaGetErrorString(cudaError_t) { return "no error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
template <typename F>
cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) {
  return cudaSuccess;  // the limit itself is checked in emu_launch
}

namespace emu {
inline float smem_buf[1 << 16];  // blocks run one at a time
struct Block {
  std::barrier<>* block_bar;
  std::vector<std::unique_ptr<std::barrier<>>>* warp_bars;
  std::vector<float>* xch;
};
inline thread_local Block cur;
}  // namespace emu

inline float* dynamic_smem() { return emu::smem_buf; }

inline void __syncthreads() { emu::cur.block_bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { (*emu::cur.warp_bars)[threadIdx.x / 32]->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int off) {
  const unsigned lane = threadIdx.x % 32, w = threadIdx.x / 32;
  float* x = emu::cur.xch->data() + w * 32;
  x[lane] = v;
  __syncwarp();
  const float r = x[lane ^ off];
  __syncwarp();
  return r;
}



namespace emu {
template <typename K, typename... A>
void launch(K kernel, dim3 grid3, dim3 block3, size_t smem_bytes, A... args) {
  if (grid3.y != 1 || grid3.z != 1 || block3.y != 1 || block3.z != 1) throw std::runtime_error("emu: 1-D launches only");
  const unsigned grid = grid3.x, block = block3.x;
  if (smem_bytes > sizeof(emu::smem_buf)) throw std::runtime_error("emu: smem too large");
  if (smem_bytes > 166912) throw std::runtime_error("emu: more dynamic shared memory than sm_80 allows");
  if (block > 1024 || block % 32 != 0) throw std::runtime_error("emu: bad block size");
  for (unsigned b = 0; b < grid; ++b) {
    std::memset(emu::smem_buf, 0xff, smem_bytes);  // all NaN: reads of unwritten shared memory show
    std::barrier<> bar(block);
    std::vector<std::unique_ptr<std::barrier<>>> wb;
    for (unsigned w = 0; w < (block + 31) / 32; ++w) wb.emplace_back(new std::barrier<>(32));
    std::vector<float> xch(block);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < block; ++t) {
      ts.emplace_back([&, t] {
        threadIdx.x = t; blockIdx.x = b; blockDim.x = block; gridDim.x = grid;
        emu::cur = {&bar, &wb, &xch};
        kernel(args...);
      });
    }
    for (auto& th : ts) th.join();
  }
}
}  // namespace emu
