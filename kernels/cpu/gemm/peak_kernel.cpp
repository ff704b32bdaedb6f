// The machine's fp32 FMA ceiling as this ISA path sees it: an FMA-throughput loop with no memory
// traffic. Compiled once per ISA path (simd.h); kernels/cpu/gemm/gemm.cpp dispatches.
//
// Each thread keeps kChains independent accumulators (more than FMA latency x FMA ports on
// current x86 cores, 4 cycles x 2 ports), so the loop is bound by FMA issue rate alone. The
// figure is the sum over threads of 2 * lanes * FMAs / that thread's CPU time. CPU time, not
// wall time: on a shared machine the OS may hand a core to another process for a while, which
// says nothing about the core's ceiling. The best of several short runs is kept.
#include <omp.h>
#include <time.h>

#include "bigmodel/gemm.h"
#include "cpu/simd.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

#if defined(BIGMODEL_BUILD_AVX2)
constexpr int kChains = 12;  // 16 ymm registers: 12 accumulators + the two operands
#else
constexpr int kChains = 16;
#endif
constexpr int64_t kBlock = 1 << 14;  // FMA rounds between clock reads

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs blocks of kBlock rounds until `seconds` of this thread's CPU time have passed; returns
// GFLOP/s.
double one_thread(double seconds, float* sink) {
  using V = Vec<float>;
  V acc[kChains];
#pragma GCC unroll 16
  for (int i = 0; i < kChains; ++i) acc[i] = V::broadcast(static_cast<float>(i) * 1e-3f);
  // x * 1 + 0 keeps the values bounded; reading the operands through a volatile keeps the
  // compiler from knowing them.
  volatile float one = 1.0f, zero = 0.0f;
  const V mul = V::broadcast(one), add = V::broadcast(zero);
  int64_t rounds = 0;
  const double t0 = thread_cpu_seconds();
  double elapsed = 0;
  do {
    for (int64_t r = 0; r < kBlock; ++r) {
#pragma GCC unroll 16
      for (int i = 0; i < kChains; ++i) acc[i] = V::fma(acc[i], mul, add);
    }
    rounds += kBlock;
    elapsed = thread_cpu_seconds() - t0;
  } while (elapsed < seconds);
  V total = acc[0];
  for (int i = 1; i < kChains; ++i) total = total + acc[i];
  float lanes[V::size];
  total.store(lanes);
  *sink += lanes[0] * 1e-30f;  // keep the loop observable
  return 2.0 * V::size * kChains * static_cast<double>(rounds) / elapsed / 1e9;
}

}  // namespace

double fma_peak_gflops(int num_threads, double seconds) {
  double total = 0;
#pragma omp parallel num_threads(num_threads) reduction(+ : total)
  {
    float sink = 0.0f;
    // A short untimed run first lets the core reach its steady clock for this instruction mix.
    one_thread(seconds * 0.1, &sink);
#pragma omp barrier
    double best = 0;
    for (int trial = 0; trial < 4; ++trial) {
      const double g = one_thread(seconds / 4, &sink);
      best = g > best ? g : best;
    }
    total += best;
  }
  return total;
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
