// 2-D convolution on CUDA: forward, gradient w.r.t. input and w.r.t. weight and bias, NCHW and
// NHWC (channels_last), float32, float64, float16 and bfloat16 (16-bit types accumulate in float).
// Semantics: kernels/include/bigmodel/conv.h (torch.nn.functional.conv2d).
//
// Every pass is an implicit GEMM per group g, never materialised (no im2col buffer): the tile
// loaders compute each operand element's tensor position on the fly, reading zero for padding.
//
//   forward      C (N*OH*OW x OCg)  = A (N*OH*OW x K) * B (K x OCg),      K = ICg*KH*KW
//                A[(n,oh,ow), (ic,kh,kw)] = x[n, g*ICg+ic, oh*sH-pH+kh*dH, ow*sW-pW+kw*dW]
//                B[(ic,kh,kw), oc]        = w[g*OCg+oc, ic, kh, kw]
//   grad input   C (N*H*W x ICg)    = A (N*H*W x K) * B (K x ICg),         K = OCg*KH*KW
//                A[(n,ih,iw), (oc,kh,kw)] = dy[n, g*OCg+oc, oh, ow] where oh*sH = ih+pH-kh*dH
//                                           (zero unless divisible and inside the output)
//                B[(oc,kh,kw), ic]        = w[g*OCg+oc, ic, kh, kw]
//   grad weight  C (OCg x ICg*KH*KW) = A (OCg x K) * B (K x ICg*KH*KW),    K = N*OH*OW
//                A[oc, (n,oh,ow)] = dy[n, g*OCg+oc, oh, ow],  B[(n,oh,ow), (ic,kh,kw)] = A of the forward
//                K is long and C small, so K is split across blocks (grid z); each split writes its
//                partial C to a workspace and a second kernel sums the splits in a fixed order (no
//                atomics: results are deterministic). grad bias: one block per channel, tree sum.
//
// Versions (all in this file):
//   v1 igemm_simt: the SIMT GEMM tile of simt_gemm.cuh (shared with lstm.cu): 64x64 block tile,
//      BK = 16, 256 threads with a 4x4 register tile each; shared memory holds the A and B tiles in
//      the accumulator type. Any dtype.
//   v2 igemm_wmma: float16 / bfloat16 on tensor cores (WMMA 16x16x16, float accumulators): 64x64
//      block tile, BK = 32, 4 warps of 32x32; the C tile goes through shared memory so that the
//      epilogue (bias, conversion, layout) is the same scalar code as v1.
//   depthwise (groups == IC == OC): the GEMM view has one output column per group, so those get
//      direct kernels instead: one thread per output (forward) / input (its gradient) element,
//      and one block per (channel, tap) for the weight gradient.
// Not yet timed on a GPU (none is lent to the project). Known costs, to revisit with one: the
// loaders do 32-bit divisions per element and are coalesced along W only for NCHW; the grad-input
// pass multiplies the zeros of strided convolutions (a phase decomposition as in the CPU kernels
// would skip them); the tiles are single-buffered (no cp.async pipeline).
#include <mma.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "bigmodel/conv.h"
#include "cuda/common.cuh"     // Num (element/accumulator types), BIGMODEL_HD, launch_kernel
#include "cuda/simt_gemm.cuh"  // the SIMT GEMM tile (v1)

namespace bigmodel::cuda {
namespace {

// ---- element types ---------------------------------------------------------------------------
template <typename T>
BIGMODEL_HD T zero() {
  return Num<T>::from_acc(typename Num<T>::acc(0));
}

// ---- geometry --------------------------------------------------------------------------------
// Sizes as int: the launchers check that every GEMM dimension and every index fits (offsets into
// the tensors are computed in 64 bits).
struct Geom {
  int N, C, H, W, OC, OH, OW, KH, KW, sH, sW, pH, pW, dH, dW, G, ICg, OCg;
  bool nhwc;
};

BIGMODEL_HD int64_t act_offset(const Geom& g, int n, int c, int h, int w, int C, int H, int W) {
  return g.nhwc ? ((int64_t(n) * H + h) * W + w) * C + c : ((int64_t(n) * C + c) * H + h) * W + w;
}

enum class Pass { fwd, bwd_input, bwd_weight };

template <typename T>
struct Args {
  Geom g;
  const T* a_src;  // fwd: x, bwd_input: dy, bwd_weight: dy
  const T* b_src;  // fwd: w, bwd_input: w, bwd_weight: x
  T* out;          // fwd: y, bwd_input: dx, bwd_weight: unused (partials go to ws)
  const T* bias;   // fwd only, may be null
  typename Num<T>::acc* ws;  // bwd_weight: [G * splits][M][Nc]
  int M, Nc, K;    // per group
  int splits;      // bwd_weight: K splits per group (grid z = G * splits); else 1
  int k_chunk;     // bwd_weight: reduction indices per split (a multiple of the block's BK)
};

// A[m, k] of group grp.
template <typename T, Pass P>
BIGMODEL_HD T load_a(const Args<T>& a, int grp, int m, int k) {
  const Geom& g = a.g;
  if constexpr (P == Pass::fwd) {
    const int ow = m % g.OW, t = m / g.OW, oh = t % g.OH, n = t / g.OH;
    const int kw = k % g.KW, t2 = k / g.KW, kh = t2 % g.KH, ic = t2 / g.KH;
    const int ih = oh * g.sH - g.pH + kh * g.dH, iw = ow * g.sW - g.pW + kw * g.dW;
    if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return zero<T>();
    return a.a_src[act_offset(g, n, grp * g.ICg + ic, ih, iw, g.C, g.H, g.W)];
  } else if constexpr (P == Pass::bwd_input) {
    const int iw = m % g.W, t = m / g.W, ih = t % g.H, n = t / g.H;
    const int kw = k % g.KW, t2 = k / g.KW, kh = t2 % g.KH, oc = t2 / g.KH;
    const int th = ih + g.pH - kh * g.dH, tw = iw + g.pW - kw * g.dW;
    if (th < 0 || tw < 0 || th % g.sH != 0 || tw % g.sW != 0) return zero<T>();
    const int oh = th / g.sH, ow = tw / g.sW;
    if (oh >= g.OH || ow >= g.OW) return zero<T>();
    return a.a_src[act_offset(g, n, grp * g.OCg + oc, oh, ow, g.OC, g.OH, g.OW)];
  } else {
    const int ow = k % g.OW, t = k / g.OW, oh = t % g.OH, n = t / g.OH;
    return a.a_src[act_offset(g, n, grp * g.OCg + m, oh, ow, g.OC, g.OH, g.OW)];
  }
}

// B[k, n] of group grp.
template <typename T, Pass P>
BIGMODEL_HD T load_b(const Args<T>& a, int grp, int k, int n) {
  const Geom& g = a.g;
  if constexpr (P == Pass::fwd) {
    return a.b_src[int64_t(grp * g.OCg + n) * a.K + k];
  } else if constexpr (P == Pass::bwd_input) {
    const int taps = g.KH * g.KW, oc = k / taps, r = k - oc * taps;
    return a.b_src[(int64_t(grp * g.OCg + oc) * g.ICg + n) * taps + r];
  } else {
    const int ow = k % g.OW, t = k / g.OW, oh = t % g.OH, img = t / g.OH;
    const int kw = n % g.KW, t2 = n / g.KW, kh = t2 % g.KH, ic = t2 / g.KH;
    const int ih = oh * g.sH - g.pH + kh * g.dH, iw = ow * g.sW - g.pW + kw * g.dW;
    if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return zero<T>();
    return a.b_src[act_offset(g, img, grp * g.ICg + ic, ih, iw, g.C, g.H, g.W)];
  }
}

// C[m, n] of block z (group, and split for bwd_weight) = v.
template <typename T, Pass P>
BIGMODEL_HD void store_c(const Args<T>& a, int z, int grp, int m, int n, typename Num<T>::acc v) {
  const Geom& g = a.g;
  if constexpr (P == Pass::fwd) {
    const int ow = m % g.OW, t = m / g.OW, oh = t % g.OH, img = t / g.OH;
    const int oc = grp * g.OCg + n;
    if (a.bias != nullptr) v += Num<T>::to_acc(a.bias[oc]);
    a.out[act_offset(g, img, oc, oh, ow, g.OC, g.OH, g.OW)] = Num<T>::from_acc(v);
  } else if constexpr (P == Pass::bwd_input) {
    const int iw = m % g.W, t = m / g.W, ih = t % g.H, img = t / g.H;
    a.out[act_offset(g, img, grp * g.ICg + n, ih, iw, g.C, g.H, g.W)] = Num<T>::from_acc(v);
  } else {
    a.ws[(int64_t(z) * a.M + m) * a.Nc + n] = v;
  }
}

// Block z -> group and reduction range [k_begin, k_end).
template <typename T, Pass P>
BIGMODEL_HD void block_range(const Args<T>& a, int z, int& grp, int& k_begin, int& k_end) {
  if constexpr (P == Pass::bwd_weight) {
    grp = z / a.splits;
    const int s = z - grp * a.splits;
    const int64_t b = int64_t(s) * a.k_chunk, e = b + a.k_chunk;
    k_begin = int(b < a.K ? b : a.K);
    k_end = int(e < a.K ? e : a.K);
  } else {
    grp = z;
    k_begin = 0;
    k_end = a.K;
  }
}

// ---- v1: SIMT implicit GEMM -----------------------------------------------------------------
// Pass P of group grp (block z) as an Op of simt_gemm.cuh. Consecutive threads walk m of A
// (consecutive output pixels, coalesced along W for NCHW) and n of B.
template <typename T, Pass P>
struct ConvGemm {
  using Acc = typename Num<T>::acc;
  static constexpr bool a_k_fast = false, b_n_fast = true;
  const Args<T>& args;
  int z, grp;
  BIGMODEL_HD Acc a(int64_t m, int64_t k) const { return Num<T>::to_acc(load_a<T, P>(args, grp, int(m), int(k))); }
  BIGMODEL_HD Acc b(int64_t k, int64_t n) const { return Num<T>::to_acc(load_b<T, P>(args, grp, int(k), int(n))); }
  BIGMODEL_HD void store(int64_t m, int64_t n, Acc v) const { store_c<T, P>(args, z, grp, int(m), int(n), v); }
};

// Block (x, y, z) of the grid: C tile (x, y) of block z's group and K range.
template <typename T, Pass P>
BIGMODEL_HD GemmBlock conv_block(const Args<T>& a, int x, int y, int z, int& grp, int& k_begin) {
  int k_end;
  block_range<T, P>(a, z, grp, k_begin, k_end);
  return {a.M, a.Nc, int64_t(x) * kGemmBM, int64_t(y) * kGemmBN, k_end};
}

template <typename T, Pass P>
__global__ void __launch_bounds__(kGemmThreads) igemm_simt(const Args<T> a) {
  const int z = blockIdx.z;
  int grp, k_begin;
  const GemmBlock t = conv_block<T, P>(a, blockIdx.x, blockIdx.y, z, grp, k_begin);
  gemm_block<typename Num<T>::acc>(ConvGemm<T, P>{a, z, grp}, t, k_begin);
}

// ---- v2: tensor cores (float16 / bfloat16) ------------------------------------------------------
constexpr int kMmaBM = 64, kMmaBN = 64, kMmaBK = 32, kMmaThreads = 128;

template <typename T, Pass P>
__global__ void __launch_bounds__(kMmaThreads) igemm_wmma(const Args<T> a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  constexpr int BM = kMmaBM, BN = kMmaBN, BK = kMmaBK;
  // Row strides padded by 16 bytes against bank conflicts; WMMA needs them to be multiples of
  // 8 (16-bit) / 4 (float) elements and fragment pointers 32-byte aligned, which these keep.
  constexpr int LDA = BK + 8, LDB = BN + 8, LDC = BN + 4;
  __shared__ __align__(32) T As[BM * LDA];
  __shared__ __align__(32) T Bs[BK * LDB];
  __shared__ __align__(32) float Cs[BM * LDC];
  const int tid = threadIdx.x, warp = tid / 32, wm = warp / 2, wn = warp % 2, z = blockIdx.z;
  int grp, k_begin, k_end;
  block_range<T, P>(a, z, grp, k_begin, k_end);
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(c[i][j], 0.0f);

  for (int k0 = k_begin; k0 < k_end; k0 += BK) {
#pragma unroll 4
    for (int r = 0; r < (BM * BK) / kMmaThreads; ++r) {
      const int e = tid + r * kMmaThreads;
      const int mm = e % BM, kk = e / BM;
      const int m = m0 + mm, k = k0 + kk;
      As[mm * LDA + kk] = (m < a.M && k < k_end) ? load_a<T, P>(a, grp, m, k) : zero<T>();
      const int nn = e % BN, kb = e / BN;
      const int n = n0 + nn, kq = k0 + kb;
      Bs[kb * LDB + nn] = (n < a.Nc && kq < k_end) ? load_b<T, P>(a, grp, kq, n) : zero<T>();
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], As + (wm * 32 + i * 16) * LDA + kk, LDA);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], Bs + kk * LDB + wn * 32 + j * 16, LDB);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(c[i][j], fa[i], fb[j], c[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, c[i][j], LDC, wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < BM * BN; e += kMmaThreads) {
    const int mm = e / BN, nn = e % BN;
    const int m = m0 + mm, n = n0 + nn;
    if (m < a.M && n < a.Nc) store_c<T, P>(a, z, grp, m, n, Cs[mm * LDC + nn]);
  }
#endif
}

// grad_weight element i = (g*OCg + m) * Nc + n: the sum over splits s of ws[g*splits + s][m][n],
// in order of s.
template <typename T>
BIGMODEL_HD void reduce_splits_at(int64_t i, const typename Num<T>::acc* ws, T* dw, int splits, int M, int Nc) {
  const int64_t per_group = int64_t(M) * Nc;
  const int64_t g = i / per_group, r = i - g * per_group;
  typename Num<T>::acc s = 0;
  for (int k = 0; k < splits; ++k) s += ws[(g * splits + k) * per_group + r];
  dw[i] = Num<T>::from_acc(s);
}

template <typename T>
__global__ void reduce_splits(const typename Num<T>::acc* ws, T* dw, int G, int splits, int M, int Nc) {
  BIGMODEL_CUDA_GRID_STRIDE_LOOP(i, int64_t(G) * M * Nc) { reduce_splits_at(i, ws, dw, splits, M, Nc); }
}

// ---- per-channel reductions (bias gradient, depthwise weight gradient) ------------------------
constexpr int kReduceThreads = 256;

template <typename A>
__device__ __forceinline__ A block_sum(A v, A* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

// ---- depthwise ---------------------------------------------------------------------------------

// Element i (in memory order of the layout) of an (N, C, H, W) activation -> (n, c, h, w).
BIGMODEL_HD void locate(const Geom& g, int64_t i, int H, int W, int& n, int& c, int& h, int& w) {
  const int64_t inner = g.nhwc ? g.C : W;  // fastest dimension
  const int64_t t = i / inner;
  if (g.nhwc) {
    c = int(i % g.C);
    w = int(t % W);
    h = int((t / W) % H);
  } else {
    w = int(i % W);
    h = int(t % H);
    c = int((t / H) % g.C);
  }
  n = int(i / (int64_t(g.C) * H * W));
}

// Element i (in memory order of the output's layout) of the depthwise forward.
template <typename T>
BIGMODEL_HD void depthwise_forward_at(const Geom& g, int64_t i, const T* x, const T* w, const T* bias, T* y) {
  using acc_t = typename Num<T>::acc;
  int n, c, oh, ow;
  locate(g, i, g.OH, g.OW, n, c, oh, ow);
  acc_t s = bias != nullptr ? Num<T>::to_acc(bias[c]) : acc_t(0);
  for (int kh = 0; kh < g.KH; ++kh) {
    const int ih = oh * g.sH - g.pH + kh * g.dH;
    if (ih < 0 || ih >= g.H) continue;
    for (int kw = 0; kw < g.KW; ++kw) {
      const int iw = ow * g.sW - g.pW + kw * g.dW;
      if (iw < 0 || iw >= g.W) continue;
      s += Num<T>::to_acc(x[act_offset(g, n, c, ih, iw, g.C, g.H, g.W)]) *
           Num<T>::to_acc(w[(int64_t(c) * g.KH + kh) * g.KW + kw]);
    }
  }
  y[i] = Num<T>::from_acc(s);
}

// Element i (in memory order of the input's layout) of the depthwise input gradient: the sum
// over the taps whose window covers it.
template <typename T>
BIGMODEL_HD void depthwise_backward_input_at(const Geom& g, int64_t i, const T* dy, const T* w, T* dx) {
  using acc_t = typename Num<T>::acc;
  int n, c, ih, iw;
  locate(g, i, g.H, g.W, n, c, ih, iw);
  acc_t s = 0;
  for (int kh = 0; kh < g.KH; ++kh) {
    const int th = ih + g.pH - kh * g.dH;
    if (th < 0 || th % g.sH != 0 || th / g.sH >= g.OH) continue;
    for (int kw = 0; kw < g.KW; ++kw) {
      const int tw = iw + g.pW - kw * g.dW;
      if (tw < 0 || tw % g.sW != 0 || tw / g.sW >= g.OW) continue;
      s += Num<T>::to_acc(dy[act_offset(g, n, c, th / g.sH, tw / g.sW, g.C, g.OH, g.OW)]) *
           Num<T>::to_acc(w[(int64_t(c) * g.KH + kh) * g.KW + kw]);
    }
  }
  dx[i] = Num<T>::from_acc(s);
}

// Output pixel q = (n, oh, ow) of channel c: its grad_output term of grad_bias[c], and (tap >= 0)
// its term of the depthwise grad_weight[c, tap].
template <typename T>
BIGMODEL_HD typename Num<T>::acc channel_term(const Geom& g, int c, int tap, int64_t q, const T* x,
                                                   const T* dy) {
  using acc_t = typename Num<T>::acc;
  const int ow = int(q % g.OW);
  const int64_t t = q / g.OW;
  const int oh = int(t % g.OH), n = int(t / g.OH);
  const acc_t d = Num<T>::to_acc(dy[act_offset(g, n, c, oh, ow, g.OC, g.OH, g.OW)]);
  if (tap < 0) return d;
  const int kh = tap / g.KW, kw = tap % g.KW;
  const int ih = oh * g.sH - g.pH + kh * g.dH, iw = ow * g.sW - g.pW + kw * g.dW;
  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return acc_t(0);
  return d * Num<T>::to_acc(x[act_offset(g, n, c, ih, iw, g.C, g.H, g.W)]);
}

template <typename T>
__global__ void depthwise_forward(const Geom g, const T* x, const T* w, const T* bias, T* y) {
  BIGMODEL_CUDA_GRID_STRIDE_LOOP(i, int64_t(g.N) * g.C * g.OH * g.OW) { depthwise_forward_at(g, i, x, w, bias, y); }
}

template <typename T>
__global__ void depthwise_backward_input(const Geom g, const T* dy, const T* w, T* dx) {
  BIGMODEL_CUDA_GRID_STRIDE_LOOP(i, int64_t(g.N) * g.C * g.H * g.W) { depthwise_backward_input_at(g, i, dy, w, dx); }
}

// The sum over output pixels of channel_term(c, tap), one block per (c = blockIdx.x,
// tap = blockIdx.y + first_tap), tree-summed in shared memory: tap -1 writes grad_bias[c], taps
// >= 0 the depthwise grad_weight[c, tap].
template <typename T>
__global__ void __launch_bounds__(kReduceThreads) channel_sums(const Geom g, const T* x, const T* dy, T* dw, T* db,
                                                               int first_tap) {
  using acc_t = typename Num<T>::acc;
  __shared__ acc_t sh[kReduceThreads];
  const int c = blockIdx.x, tap = int(blockIdx.y) + first_tap;
  const int64_t pixels = int64_t(g.N) * g.OH * g.OW;
  acc_t s = 0;
  for (int64_t q = threadIdx.x; q < pixels; q += blockDim.x) s += channel_term(g, c, tap, q, x, dy);
  s = block_sum(s, sh);
  if (threadIdx.x == 0) {
    if (tap < 0)
      db[c] = Num<T>::from_acc(s);
    else
      dw[int64_t(c) * g.KH * g.KW + tap] = Num<T>::from_acc(s);
  }
}

// ---- launchers ---------------------------------------------------------------------------------

bool is_depthwise(const Conv2dParams& p) { return p.groups > 1 && p.groups == p.IC && p.OC == p.IC; }

Geom make_geom(const Conv2dParams& p, const char* op) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const int64_t ICg = p.IC / p.groups, OCg = p.OC / p.groups, taps = p.KH * p.KW;
  // every GEMM dimension, every per-dimension position and every flattened index below 2^31
  const int64_t dims[] = {p.N * p.OH * p.OW, p.N * p.H * p.W, ICg * taps, OCg * taps,
                          p.OH * p.sH + p.KH * p.dH, p.OW * p.sW + p.KW * p.dW, p.H + p.pH + p.KH * p.dH,
                          p.W + p.pW + p.KW * p.dW, p.groups};
  for (int64_t d : dims)
    if (d > kMax) throw std::invalid_argument(std::string(op) + ": the problem is too large for the CUDA kernels "
                                              "(a GEMM dimension or position exceeds 2^31 - 1)");
  auto c = [](int64_t v) { return static_cast<int>(v); };
  return {c(p.N),  c(p.IC), c(p.H),  c(p.W),  c(p.OC), c(p.OH),       c(p.OW), c(p.KH), c(p.KW), c(p.sH),
          c(p.sW), c(p.pH), c(p.pW), c(p.dH), c(p.dW), c(p.groups), c(ICg),  c(OCg),  p.layout == Layout::nhwc};
}

int device_sm_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 80;
  return sms > 0 ? sms : 80;
}

bool tensor_cores_for(DType dtype) {
  if (dtype != DType::f16 && dtype != DType::bf16) return false;
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
    return false;
  return major >= 8;
}

template <typename T>
dim3 igemm_grid(const Args<T>& a, int bm, int bn, int grid_z, const char* what) {
  const dim3 grid(ceil_div(a.M, bm), ceil_div(a.Nc, bn), grid_z);
  if (grid.y > 65535) throw std::invalid_argument(std::string(what) + ": too many output channels for CUDA");
  return grid;
}

template <typename T, Pass P>
void launch_igemm(const Args<T>& a, int grid_z, cudaStream_t stream, const char* what) {
  if (grid_z > 65535) throw std::invalid_argument(std::string(what) + ": more than 65535 groups (or splits) on CUDA");
  if (tensor_cores_for(std::is_same_v<T, __half> ? DType::f16 : std::is_same_v<T, __nv_bfloat16> ? DType::bf16 : DType::f32)) {
    if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) {
      return launch_kernel(what, igemm_wmma<T, P>, igemm_grid(a, kMmaBM, kMmaBN, grid_z, what), kMmaThreads, 0,
                           stream, a);
    }
  }
  launch_kernel(what, igemm_simt<T, P>, igemm_grid(a, kGemmBM, kGemmBN, grid_z, what), kGemmThreads, 0, stream, a);
}

// K splits of the weight-gradient GEMM: enough blocks for ~4 waves of the GPU, each split at
// least 8 block-K steps long. The same on every call for one problem and device (determinism).
// k_chunk for `s` splits: ceil(K / s) rounded up to a multiple of both block-K sizes, so that no
// split boundary falls inside a block step.
int split_chunk(int64_t K, int64_t s) {
  const int64_t step = kMmaBK;  // kGemmBK divides it
  int64_t chunk = (K + s - 1) / s;
  chunk = (chunk + step - 1) / step * step;
  return static_cast<int>(chunk < step ? step : chunk);
}

void weight_splits(const Conv2dParams& p, const Geom& g, int& splits, int& k_chunk) {
  const int64_t K = int64_t(g.N) * g.OH * g.OW;
  const int64_t tiles = int64_t(g.G) * ((g.OCg + 63) / 64) * ((int64_t(g.ICg) * g.KH * g.KW + 63) / 64);
  const int64_t want = (4 * int64_t(device_sm_count()) + tiles - 1) / tiles;
  const int64_t most = K / (8 * kMmaBK) > 1 ? K / (8 * kMmaBK) : 1;
  int64_t s = want < most ? want : most;
  if (s < 1) s = 1;
  if (s * g.G > 65535) s = 65535 / g.G > 0 ? 65535 / g.G : 1;
  splits = static_cast<int>(s);
  k_chunk = split_chunk(K, s);
}

}  // namespace

void conv2d_forward(const Conv2dParams& p, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const Geom g = make_geom(p, "conv2d");
  if (p.N == 0) return;
  dispatch_float(p.dtype, "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (is_depthwise(p)) {
      return launch_kernel("conv2d (depthwise)", depthwise_forward<T>, blocks_for(int64_t(g.N) * g.C * g.OH * g.OW),
                           kThreads, 0, stream, g, static_cast<const T*>(p.input), static_cast<const T*>(p.weight),
                           static_cast<const T*>(p.bias), static_cast<T*>(p.output));
    }
    Args<T> a{g, static_cast<const T*>(p.input), static_cast<const T*>(p.weight), static_cast<T*>(p.output),
              static_cast<const T*>(p.bias), nullptr, g.N * g.OH * g.OW, g.OCg, g.ICg * g.KH * g.KW, 1, 0};
    launch_igemm<T, Pass::fwd>(a, g.G, stream, "conv2d");
  });
}

void conv2d_backward_input(const Conv2dParams& p, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const Geom g = make_geom(p, "conv2d_backward_input");
  if (p.N == 0) return;
  dispatch_float(p.dtype, "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (is_depthwise(p)) {
      return launch_kernel("conv2d_backward_input (depthwise)", depthwise_backward_input<T>,
                           blocks_for(int64_t(g.N) * g.C * g.H * g.W), kThreads, 0, stream, g,
                           static_cast<const T*>(p.grad_output), static_cast<const T*>(p.weight),
                           static_cast<T*>(p.grad_input));
    }
    Args<T> a{g, static_cast<const T*>(p.grad_output), static_cast<const T*>(p.weight), static_cast<T*>(p.grad_input),
              nullptr, nullptr, g.N * g.H * g.W, g.ICg, g.OCg * g.KH * g.KW, 1, 0};
    launch_igemm<T, Pass::bwd_input>(a, g.G, stream, "conv2d_backward_input");
  });
}

int64_t conv2d_backward_weight_workspace_bytes(const Conv2dParams& p) {
  if (is_depthwise(p)) return 0;
  const Geom g = make_geom(p, "conv2d_backward_weight");
  int splits, k_chunk;
  weight_splits(p, g, splits, k_chunk);
  const int64_t acc_bytes = p.dtype == DType::f64 ? 8 : 4;
  return int64_t(g.G) * splits * g.OCg * (int64_t(g.ICg) * g.KH * g.KW) * acc_bytes;
}

void conv2d_backward_weight(const Conv2dParams& p, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const Geom g = make_geom(p, "conv2d_backward_weight");
  dispatch_float(p.dtype, "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using acc_t = typename Num<T>::acc;
    const T* x = static_cast<const T*>(p.input);
    const T* dy = static_cast<const T*>(p.grad_output);
    T* dw = static_cast<T*>(p.grad_weight);
    T* db = static_cast<T*>(p.grad_bias);
    if (db != nullptr) {
      launch_kernel("conv2d_backward_weight (bias)", channel_sums<T>, dim3(g.OC, 1), kReduceThreads, 0, stream, g, x,
                    dy, dw, db, -1);
    }
    if (is_depthwise(p)) {
      if (g.KH * g.KW > 65535) throw std::invalid_argument("conv2d_backward_weight: depthwise kernel too large for CUDA");
      return launch_kernel("conv2d_backward_weight (depthwise)", channel_sums<T>, dim3(g.C, g.KH * g.KW),
                           kReduceThreads, 0, stream, g, x, dy, dw, db, 0);
    }
    int splits, k_chunk;
    weight_splits(p, g, splits, k_chunk);
    if (p.workspace == nullptr)
      throw std::invalid_argument("conv2d_backward_weight: CUDA needs a workspace (see conv2d_backward_weight_workspace_bytes)");
    Args<T> a{g, static_cast<const T*>(p.grad_output), static_cast<const T*>(p.input), nullptr, nullptr,
              static_cast<acc_t*>(p.workspace), g.OCg, g.ICg * g.KH * g.KW, g.N * g.OH * g.OW, splits, k_chunk};
    launch_igemm<T, Pass::bwd_weight>(a, g.G * splits, stream, "conv2d_backward_weight");
    launch_kernel("conv2d_backward_weight (reduce)", reduce_splits<T>, blocks_for(int64_t(g.G) * a.M * a.Nc), kThreads,
                  0, stream, a.ws, static_cast<T*>(p.grad_weight), g.G, splits, a.M, a.Nc);
  });
}

}  // namespace bigmodel::cuda
