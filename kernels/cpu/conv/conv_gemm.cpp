// Pointwise (1x1, stride 1, no padding) NCHW convolutions on the shared GEMM core
// (kernels/include/bigmodel/gemm.h): such a convolution IS a GEMM per image and group, with every
// operand read in place:
//
//   forward      y[n, g] (OCg x HW) = W_g (OCg x ICg) * x[n, g] (ICg x HW) + bias   (bias: row epilogue)
//   grad input  dx[n, g] (ICg x HW) = W_g^T (ICg x OCg) * dy[n, g] (OCg x HW)
//
// W_g (or its transpose) is packed once per call into the GEMM's A panels and shared read-only by
// all threads; x / dy are B operands read with unit column stride (the GEMM's vector-copy
// packing path). Measured against the direct kernel (conv_direct_kernel.cpp) on this path: the
// GEMM's 14x32 register tile over pre-packed weights is faster for 1x1 forward and grad-input
// (its B packing is a plain copy), while the direct weight-gradient tile is as fast or faster
// than a batch-reduce GEMM (which would need transposing packs of both operands), so the weight
// gradient stays direct.
//
// Threads: one parallel region; work items are (image, group, column chunk) and each thread runs
// gemm_single_thread on its items with its own scratch (no shared writes).
#include <omp.h>

#include <vector>

#include "bigmodel/conv.h"
#include "bigmodel/gemm.h"
#include "cpu/util.h"

namespace bigmodel::cpu {

bool conv2d_is_pointwise_nchw(const Conv2dParams& p) {
  return p.layout == Layout::nchw && p.KH == 1 && p.KW == 1 && p.sH == 1 && p.sW == 1 && p.pH == 0 && p.pW == 0 &&
         p.OH == p.H && p.OW == p.W && (p.dtype == DType::f32 || p.dtype == DType::f64);
}

namespace {

enum class Pass { forward, backward_input };

void pointwise(const Conv2dParams& p, Pass pass) {
  const int64_t esize = p.dtype == DType::f64 ? 8 : 4;
  const int64_t G = p.groups, ICg = p.IC / G, OCg = p.OC / G, HW = p.H * p.W;
  const bool fwd = pass == Pass::forward;
  const int64_t M = fwd ? OCg : ICg, K = fwd ? ICg : OCg;  // C is M x cols, A is M x K
  const int64_t C_in = fwd ? p.IC : p.OC, C_out = fwd ? p.OC : p.IC;
  const char* src = static_cast<const char*>(fwd ? p.input : p.grad_output);
  char* dst = static_cast<char*>(fwd ? p.output : p.grad_input);
  const char* w = static_cast<const char*>(p.weight);
  const int nt_req = p.num_threads < 1 ? 1 : p.num_threads;

  // A of each group, packed once: W_g (row-major OCg x ICg) or its transpose.
  const int64_t packed_bytes = gemm_packed_bytes(p.dtype, GemmSide::a, M, K);
  AlignedBuffer packed_buf(G * packed_bytes);
  std::vector<GemmPacked> packed_w(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) {
    // W_g(oc, ic) at oc*ICg + ic; A(m, k) is W_g(m, k) forward and W_g(k, m) for grad input
    packed_w[static_cast<size_t>(g)] = gemm_pack(pack_params(p.dtype, GemmSide::a, M, K, w + g * OCg * ICg * esize,
                                                           fwd ? ICg : 1, fwd ? 1 : ICg,
                                                           packed_buf.data() + g * packed_bytes, nt_req));
  }

  // Column chunks: whole planes when there are enough (image, group) pairs for the threads,
  // else planes cut into multiples of 64 columns (whole NR panels).
  int64_t chunk = HW;
  if (p.N * G < 2 * nt_req) {
    const int64_t pieces = ceil_div(2 * nt_req, p.N * G);
    chunk = round_up(ceil_div(HW, pieces), 64);
  }
  const int64_t nchunks = ceil_div(HW, chunk), items = p.N * G * nchunks;
  const double macs = double(p.N) * HW * M * K * G;
  const int nt = macs < 65536.0 ? 1 : nt_req;

  auto params_for = [&](int64_t item) {
    const int64_t c = item % nchunks, ng = item / nchunks, g = ng % G, n = ng / G;
    const int64_t c0 = c * chunk, cols = (c0 + chunk < HW ? chunk : HW - c0);
    GemmParams gp;
    gp.dtype = p.dtype;
    gp.M = M;
    gp.N = cols;
    gp.K = K;
    gp.a = packed(&packed_w[static_cast<size_t>(g)]);
    gp.b = strided(src + ((n * C_in + g * K) * HW + c0) * esize, HW, 1);
    gp.c = dst + ((n * C_out + g * M) * HW + c0) * esize;
    gp.rs_c = HW;
    gp.cs_c = 1;
    if (fwd && p.bias != nullptr) {
      gp.epilogue.bias_kind = GemmBias::per_row;
      gp.epilogue.bias = static_cast<const char*>(p.bias) + g * OCg * esize;
    }
    return gp;
  };
  // Scratch depends on the problem's size only through its dimensions: the first item has the
  // widest chunk. gemm_scratch_bytes also validates the parameters, outside the parallel region.
  const int64_t scratch_bytes = align64(gemm_scratch_bytes(params_for(0)));
  AlignedBuffer scratch(scratch_bytes * nt);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t begin, end;
    split_range(items, tid, nth, begin, end);
    void* mine = scratch.data() + tid * scratch_bytes;
    for (int64_t item = begin; item < end; ++item) gemm_single_thread(params_for(item), mine, scratch_bytes);
  }
}

}  // namespace

void conv2d_pointwise_forward(const Conv2dParams& p) { pointwise(p, Pass::forward); }
void conv2d_pointwise_backward_input(const Conv2dParams& p) { pointwise(p, Pass::backward_input); }

}  // namespace bigmodel::cpu
