// Test harness: runs the per-element code of kernels/cuda/conv.cu on the host - the SIMT
// implicit GEMM of every pass (the shared GEMM tile's phases with the pass's operand loaders and
// epilogues, over the same blocks, groups and K splits the kernels use), the split reduction, the
// per-channel sums and the depthwise bodies - so that their index math and dtype handling can be
// checked against torch on a machine without a GPU (tests/conv/test_conv_cuda_emulated.py builds this
// file with nvcc and calls it through ctypes). What it cannot check (shared-memory barriers,
// tensor-core fragments, launches) is covered by the
// CUDA tests in tests/conv/test_conv.py on a machine with a GPU. Not part of the package.
#include <vector>

#include "cuda/conv.cu"
#include "gemm_emulation.h"

namespace {

using namespace bigmodel;
using namespace bigmodel::cuda;

// Every block (x, y, z) of the SIMT implicit-GEMM grid, through the GEMM tile's per-thread phases
// (gemm_emulation.h) and the same operand loaders, block ranges and epilogues as the kernel.
template <typename T, Pass P>
void igemm(const Args<T>& a, int grid_z) {
  for (int z = 0; z < grid_z; ++z)
    for (int x = 0; x < ceil_div(a.M, kGemmBM); ++x)
      for (int y = 0; y < ceil_div(a.Nc, kGemmBN); ++y) {
        int grp, k_begin;
        const GemmBlock t = conv_block<T, P>(a, x, y, z, grp, k_begin);
        emulate_gemm_block(ConvGemm<T, P>{a, z, grp}, t, k_begin);
      }
}

template <typename T>
void run(int pass, const Conv2dParams& p, int splits) {
  using acc_t = typename Num<T>::acc;
  const Geom g = make_geom(p, "conv2d (emulated)");
  const T* x = static_cast<const T*>(p.input);
  const T* w = static_cast<const T*>(p.weight);
  const T* dy = static_cast<const T*>(p.grad_output);
  if (pass == 0) {
    if (is_depthwise(p)) {
      for (int64_t i = 0; i < int64_t(g.N) * g.C * g.OH * g.OW; ++i)
        depthwise_forward_at(g, i, x, w, static_cast<const T*>(p.bias), static_cast<T*>(p.output));
      return;
    }
    Args<T> a{g, x, w, static_cast<T*>(p.output), static_cast<const T*>(p.bias), nullptr,
              g.N * g.OH * g.OW, g.OCg, g.ICg * g.KH * g.KW, 1, 0};
    igemm<T, Pass::fwd>(a, g.G);
  } else if (pass == 1) {
    if (is_depthwise(p)) {
      for (int64_t i = 0; i < int64_t(g.N) * g.C * g.H * g.W; ++i)
        depthwise_backward_input_at(g, i, dy, w, static_cast<T*>(p.grad_input));
      return;
    }
    Args<T> a{g, dy, w, static_cast<T*>(p.grad_input), nullptr, nullptr, g.N * g.H * g.W, g.ICg,
              g.OCg * g.KH * g.KW, 1, 0};
    igemm<T, Pass::bwd_input>(a, g.G);
  } else {
    T* dw = static_cast<T*>(p.grad_weight);
    T* db = static_cast<T*>(p.grad_bias);
    const int64_t pixels = int64_t(g.N) * g.OH * g.OW;
    auto channel_sum = [&](int c, int tap) {
      acc_t s = 0;
      for (int64_t q = 0; q < pixels; ++q) s += channel_term(g, c, tap, q, x, dy);
      return Num<T>::from_acc(s);
    };
    if (db != nullptr)
      for (int c = 0; c < g.OC; ++c) db[c] = channel_sum(c, -1);
    if (is_depthwise(p)) {
      for (int c = 0; c < g.C; ++c)
        for (int t = 0; t < g.KH * g.KW; ++t) dw[int64_t(c) * g.KH * g.KW + t] = channel_sum(c, t);
      return;
    }
    const int K = g.N * g.OH * g.OW, Nc = g.ICg * g.KH * g.KW;
    std::vector<acc_t> ws(size_t(g.G) * splits * g.OCg * Nc, acc_t(-12345));  // every entry is written
    Args<T> a{g, dy, x, nullptr, nullptr, ws.data(), g.OCg, Nc, K, splits, split_chunk(K, splits)};
    igemm<T, Pass::bwd_weight>(a, g.G * splits);
    for (int64_t i = 0; i < int64_t(g.G) * g.OCg * Nc; ++i) reduce_splits_at(i, ws.data(), dw, splits, g.OCg, Nc);
  }
}

}  // namespace

// a = {dtype, layout, N, IC, H, W, OC, OH, OW, KH, KW, sH, sW, pH, pW, dH, dW, groups}.
// pass 0: forward (x, w, bias -> out); 1: grad input (dy, w -> out); 2: grad weight (dy, x -> out,
// and grad_bias when not null) computed with `splits` K splits. Returns 0, or -1 on an error.
extern "C" int bigmodel_conv_emulate(int pass, const int64_t* a, const void* x, const void* w, const void* bias,
                                     const void* dy, void* out, void* grad_bias, int splits) {
  Conv2dParams p;
  p.dtype = static_cast<DType>(a[0]);
  p.layout = a[1] ? Layout::nhwc : Layout::nchw;
  p.N = a[2], p.IC = a[3], p.H = a[4], p.W = a[5], p.OC = a[6], p.OH = a[7], p.OW = a[8];
  p.KH = a[9], p.KW = a[10], p.sH = a[11], p.sW = a[12], p.pH = a[13], p.pW = a[14], p.dH = a[15], p.dW = a[16];
  p.groups = a[17];
  p.input = x, p.weight = w, p.bias = bias, p.grad_output = dy, p.grad_bias = grad_bias;
  p.output = p.grad_input = p.grad_weight = out;  // the pass's result
  try {
    dispatch_float(p.dtype, "conv2d (emulated)", [&](auto tag) { run<typename decltype(tag)::type>(pass, p, splits); });
  } catch (...) {
    return -1;
  }
  return 0;
}
