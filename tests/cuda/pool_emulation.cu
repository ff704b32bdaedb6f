// Test harness: runs the per-element bodies of kernels/cuda/pool.cu on the host, one element
// after another, so that their index math, window rules and dtype handling can be checked
// against torch on a machine without a GPU (tests/pool/test_pool_cuda_emulated.py builds this file
// with nvcc and calls it through ctypes). Not part of the package.
#include <cstdio>

#include "cuda/pool.cu"

namespace {

using namespace bigmodel;
using namespace bigmodel::cuda;

// op: 0 max forward, 1 max backward, 2 avg forward, 3 avg backward (PoolOp's order).
template <PoolOp kOp, typename T, typename index_t, bool kNHWC>
void run(const Pool2dParams& p, const Geom<index_t>& g) {
  const PoolArgs<T> a = pool_args<T>(p, kOp);
  for (int64_t i = 0; i < result_numel(p, kOp); ++i) pool_at<kOp, T, index_t, kNHWC>(static_cast<index_t>(i), a, g);
}

template <typename T, typename index_t, bool kNHWC>
void run(int op, const Pool2dParams& p, const Geom<index_t>& g) {
  switch (op) {
    case 0: return run<PoolOp::max_forward, T, index_t, kNHWC>(p, g);
    case 1: return run<PoolOp::max_backward, T, index_t, kNHWC>(p, g);
    case 2: return run<PoolOp::avg_forward, T, index_t, kNHWC>(p, g);
    default: return run<PoolOp::avg_backward, T, index_t, kNHWC>(p, g);
  }
}

// The sizes and window arguments of a (below); no tensors.
Pool2dParams params_from(const int64_t* a) {
  Pool2dParams p;
  p.dtype = static_cast<DType>(a[0]);
  p.layout = static_cast<Layout>(a[1]);
  p.N = a[2], p.C = a[3], p.H = a[4], p.W = a[5], p.OH = a[6], p.OW = a[7];
  p.kH = a[8], p.kW = a[9], p.sH = a[10], p.sW = a[11], p.pH = a[12], p.pW = a[13], p.dH = a[14], p.dW = a[15];
  p.count_include_pad = a[16] != 0;
  p.divisor_override = a[17];
  return p;
}

}  // namespace

// a = {dtype, layout, N, C, H, W, OH, OW, kH, kW, sH, sW, pH, pW, dH, dW, count_include_pad,
// divisor_override}. index_bits: 32 or 64 forces that index width (32 fails unless the kernels
// would pick it themselves), 0 picks as the kernels do. Returns the index width used, or -1.
extern "C" int bigmodel_pool_emulate(int op, const int64_t* a, const void* input, const void* grad_output,
                                     void* result, int64_t* indices, int index_bits) {
  Pool2dParams p = params_from(a);
  p.input = input;
  p.grad_output = grad_output;
  p.output = p.grad_input = result;
  p.indices = indices;
  const bool small = fits_int32(p);
  if (index_bits == 32 && !small) return -1;
  const bool use64 = index_bits == 64 || !small;
  dispatch_float(p.dtype, "pool (emulated)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto go = [&](auto geom) {
      using index_t = decltype(geom.N);
      BOOL_SWITCH(p.layout == Layout::nhwc, kNHWC, [&] { run<T, index_t, kNHWC>(op, p, geom); });
    };
    if (use64)
      go(make_geom<int64_t>(p));
    else
      go(make_geom<int32_t>(p));
  });
  return use64 ? 64 : 32;
}

// The index width the kernels would choose for these sizes (32 or 64).
extern "C" int bigmodel_pool_index_bits(const int64_t* a) { return fits_int32(params_from(a)) ? 32 : 64; }
