// Test harness: runs the per-element code of kernels/cuda/conv.cu on the host - the implicit-GEMM
// operand loaders and epilogues of every pass (over the same blocks, groups and K splits the
// kernels use), the split reduction, the per-channel sums and the depthwise bodies - so that
// their index math and dtype handling can be checked against torch on a machine without a GPU
// (tests/test_conv_cuda_emulated.py builds this file with nvcc and calls it through ctypes).
// What it cannot check (shared-memory tiling, tensor-core fragments, launches) is covered by the
// CUDA tests in tests/test_conv.py on a machine with a GPU. Not part of the package.
#include <vector>

#include "cuda/conv.cu"

namespace {

using namespace bigmodel;
using namespace bigmodel::cuda;

// C of every block z of the grid: for its group and K range, every (m, n) of the GEMM.
template <typename T, Pass P>
void igemm(const Args<T>& a, int grid_z) {
  using acc_t = typename Num<T>::acc;
  for (int z = 0; z < grid_z; ++z) {
    int grp, k_begin, k_end;
    block_range<T, P>(a, z, grp, k_begin, k_end);
    for (int m = 0; m < a.M; ++m)
      for (int n = 0; n < a.Nc; ++n) {
        acc_t s = 0;
        for (int k = k_begin; k < k_end; ++k)
          s += Num<T>::to_acc(load_a<T, P>(a, grp, m, k)) * Num<T>::to_acc(load_b<T, P>(a, grp, k, n));
        store_c<T, P>(a, z, grp, m, n, s);
      }
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
  p.input = x;
  p.weight = w;
  p.bias = bias;
  p.grad_output = dy;
  p.output = out;
  p.grad_input = out;
  p.grad_weight = out;
  p.grad_bias = grad_bias;
  try {
    switch (p.dtype) {
      case DType::f32: run<float>(pass, p, splits); break;
      case DType::f64: run<double>(pass, p, splits); break;
      case DType::f16: run<__half>(pass, p, splits); break;
      case DType::bf16: run<__nv_bfloat16>(pass, p, splits); break;
    }
  } catch (...) {
    return -1;
  }
  return 0;
}
