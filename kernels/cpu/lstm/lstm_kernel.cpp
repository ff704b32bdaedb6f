// LSTM layer on the CPU, forward and backward (see kernels/include/bigmodel/lstm.h for the math).
// Compiled once per ISA path (see kernels/cpu/simd.h); kernels/cpu/lstm/lstm.cpp validates and
// dispatches here.
//
// Forward
//   1. gates (T*B, 4H) = X (T*B, I) W_ih^T + (b_ih + b_hh): one multi-threaded GEMM.
//   2. One OpenMP region for the recurrence. Thread k owns hidden units [j0, j1) and packs, once,
//      the four slices of W_hh^T that feed them (gate q: columns q*H + j0 .. q*H + j1). Per
//      step it packs h_{t-1} once, adds h_{t-1} W_hh^T into its columns of gates[t]
//      (gemm_single_thread, beta = 1: four B x w x H products on pre-packed operands), then,
//      while that B x 4w block is still in L2, applies the gate nonlinearities and the c/h
//      update for its units, overwriting the pre-activations with the activated gates (which
//      the backward reads). One barrier per step: the next step's GEMM reads all of h_t.
// Backward (BPTT), one region, the same split by hidden units:
//      pointwise: dG_t for the thread's units from dh = grad_output[t] + dh_rec and the saved
//      gates / cells, dc carried in place, db accumulated while dG_t is hot; barrier; then
//      dh_rec[:, j0:j1] = dG_t W_hh[:, j0:j1] with a pre-packed W_hh slice (K = 4H).
//   Afterwards three multi-threaded GEMMs over all T steps at once:
//      dW_ih = dG^T X,  dW_hh = sum_t dG_t^T h_{t-1} (batch-reduce over t),  dX = dG W_ih.
//
// float32 uses a rational tanh (max abs error 3.5e-7, sigmoid(x) = (1 + tanh(x/2)) / 2) in
// vector registers; float64 uses <cmath> and is accurate to the last bits (gradcheck).
#include <omp.h>

#include "bigmodel/gemm.h"
#include "bigmodel/lstm.h"
#include "cpu/simd.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

BM_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Owns a raw, 64-byte aligned byte buffer (new[] / delete[] only: see simd.h).
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t bytes) { reset(bytes); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { delete[] raw_; }
  void reset(int64_t bytes) {
    delete[] raw_;
    raw_ = new char[bytes + 64];
    const uintptr_t a = reinterpret_cast<uintptr_t>(raw_);
    data_ = reinterpret_cast<char*>((a + 63) & ~uintptr_t(63));
    bytes_ = bytes;
  }
  char* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  char* raw_ = nullptr;
  char* data_ = nullptr;
  int64_t bytes_ = 0;
};

// ---- gate nonlinearities ---------------------------------------------------------------------

// tanh(x) for float lanes: x clamped to +-7.905, then an odd/even rational polynomial in x^2
// (minimax fit, the form Eigen uses). Max abs error 3.5e-7 over the real line; NaN stays NaN.
BM_INLINE Vec<float> tanh_vec(Vec<float> x) {
  using V = Vec<float>;
  const V hi = V::broadcast(7.90531110763549805f), lo = V::broadcast(-7.90531110763549805f);
  x = V::select(V::gt(x, hi), hi, x);
  x = V::select(V::gt(lo, x), lo, x);
  const V x2 = x * x;
  V p = V::broadcast(-2.76076847742355e-16f);
  p = V::fma(p, x2, V::broadcast(2.00018790482477e-13f));
  p = V::fma(p, x2, V::broadcast(-8.60467152213735e-11f));
  p = V::fma(p, x2, V::broadcast(5.12229709037114e-08f));
  p = V::fma(p, x2, V::broadcast(1.48572235717979e-05f));
  p = V::fma(p, x2, V::broadcast(6.37261928875436e-04f));
  p = V::fma(p, x2, V::broadcast(4.89352455891786e-03f));
  p = p * x;
  V q = V::broadcast(1.19825839466702e-06f);
  q = V::fma(q, x2, V::broadcast(1.18534705686654e-04f));
  q = V::fma(q, x2, V::broadcast(2.26843463243900e-03f));
  q = V::fma(q, x2, V::broadcast(4.89352518554385e-03f));
  return p / q;
}

// sigmoid(x) = 1/2 + tanh(x/2)/2.
BM_INLINE Vec<float> sigmoid_vec(Vec<float> x) {
  using V = Vec<float>;
  const V half = V::broadcast(0.5f);
  return V::fma(half, tanh_vec(half * x), half);
}

BM_INLINE double sigmoid_scalar(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// ---- pointwise cell update, one batch row, units [j0, j1) -------------------------------------
//   g    (4H): pre-activation gates in, activated gates (i, f, g, o) out
//   c_prev, c_out, h_out, h_copy (H): c_{t-1} in; c_t, h_t and a second copy of h_t out

BM_INLINE void cell_forward_row(float* g, const float* c_prev, float* c_out, float* h_out, float* h_copy, int64_t H,
                                int64_t j0, int64_t j1) {
  using V = Vec<float>;
  for (int64_t j = j0; j < j1; j += V::size) {
    const int n = static_cast<int>(min64(V::size, j1 - j));
    const V i = sigmoid_vec(V::load(g + j, n));
    const V f = sigmoid_vec(V::load(g + H + j, n));
    const V gg = tanh_vec(V::load(g + 2 * H + j, n));
    const V o = sigmoid_vec(V::load(g + 3 * H + j, n));
    i.store(g + j, n);
    f.store(g + H + j, n);
    gg.store(g + 2 * H + j, n);
    o.store(g + 3 * H + j, n);
    const V c = V::fma(f, V::load(c_prev + j, n), i * gg);
    const V h = o * tanh_vec(c);
    c.store(c_out + j, n);
    h.store(h_out + j, n);
    h.store(h_copy + j, n);
  }
}

BM_INLINE void cell_forward_row(double* g, const double* c_prev, double* c_out, double* h_out, double* h_copy,
                                int64_t H, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) {
    const double i = sigmoid_scalar(g[j]), f = sigmoid_scalar(g[H + j]);
    const double gg = std::tanh(g[2 * H + j]), o = sigmoid_scalar(g[3 * H + j]);
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = gg;
    g[3 * H + j] = o;
    const double c = f * c_prev[j] + i * gg;
    const double h = o * std::tanh(c);
    c_out[j] = c;
    h_out[j] = h;
    h_copy[j] = h;
  }
}

// Backward of one row, units [j0, j1):
//   dh = grad_out + dh_rec (grad_out may be null);  tc = tanh(c)
//   dc = dc + dh * o * (1 - tc^2);  dG = [dc g i(1-i), dc c_prev f(1-f), dc i (1-g^2), dh tc o(1-o)]
//   dc <- dc * f (the carry to step t-1);  db (4w, indexed from j0 per gate) += dG
BM_INLINE void cell_backward_row(const float* g, const float* c, const float* c_prev, const float* grad_out,
                                 const float* dh_rec, float* dc, float* dg, float* db, int64_t H, int64_t j0,
                                 int64_t j1) {
  using V = Vec<float>;
  const int64_t w = j1 - j0;
  const V one = V::broadcast(1.0f);
  for (int64_t j = j0; j < j1; j += V::size) {
    const int n = static_cast<int>(min64(V::size, j1 - j));
    V dh = V::load(dh_rec + j, n);
    if (grad_out) dh = dh + V::load(grad_out + j, n);
    const V i = V::load(g + j, n), f = V::load(g + H + j, n);
    const V gg = V::load(g + 2 * H + j, n), o = V::load(g + 3 * H + j, n);
    const V tc = tanh_vec(V::load(c + j, n));
    const V dcv = V::fma(dh * o, one - tc * tc, V::load(dc + j, n));
    const V di = dcv * gg * i * (one - i);
    const V df = dcv * V::load(c_prev + j, n) * f * (one - f);
    const V dgg = dcv * i * (one - gg * gg);
    const V dout = dh * tc * o * (one - o);
    di.store(dg + j, n);
    df.store(dg + H + j, n);
    dgg.store(dg + 2 * H + j, n);
    dout.store(dg + 3 * H + j, n);
    (dcv * f).store(dc + j, n);
    float* b = db + (j - j0);
    (V::load(b, n) + di).store(b, n);
    (V::load(b + w, n) + df).store(b + w, n);
    (V::load(b + 2 * w, n) + dgg).store(b + 2 * w, n);
    (V::load(b + 3 * w, n) + dout).store(b + 3 * w, n);
  }
}

BM_INLINE void cell_backward_row(const double* g, const double* c, const double* c_prev, const double* grad_out,
                                 const double* dh_rec, double* dc, double* dg, double* db, int64_t H, int64_t j0,
                                 int64_t j1) {
  const int64_t w = j1 - j0;
  for (int64_t j = j0; j < j1; ++j) {
    const double dh = dh_rec[j] + (grad_out ? grad_out[j] : 0.0);
    const double i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
    const double tc = std::tanh(c[j]);
    const double dcv = dc[j] + dh * o * (1.0 - tc * tc);
    const double di = dcv * gg * i * (1.0 - i), df = dcv * c_prev[j] * f * (1.0 - f);
    const double dgg = dcv * i * (1.0 - gg * gg), dout = dh * tc * o * (1.0 - o);
    dg[j] = di;
    dg[H + j] = df;
    dg[2 * H + j] = dgg;
    dg[3 * H + j] = dout;
    dc[j] = dcv * f;
    double* b = db + (j - j0);
    b[0] += di;
    b[w] += df;
    b[2 * w] += dgg;
    b[3 * w] += dout;
  }
}

template <typename T>
BM_INLINE void copy_units(T* dst, const T* src, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) dst[j] = src ? src[j] : T(0);
}

// ---- work split --------------------------------------------------------------------------------

constexpr int64_t kUnitStep = 16;  // hidden units are split between threads in multiples of this

// Threads for the recurrence: each needs at least one kUnitStep of units, and a step must be
// worth a barrier (~1-2 us): below ~256 kFLOP per step one thread does it all.
int recurrence_threads(const LstmParams& p) {
  const int64_t chunks = (p.H + kUnitStep - 1) / kUnitStep;
  int64_t nt = p.num_threads < 1 ? 1 : p.num_threads;
  if (nt > chunks) nt = chunks;
  if (2 * p.B * 4 * p.H * p.H < (int64_t(1) << 18)) nt = 1;
  return static_cast<int>(nt);
}

// Units [j0, j1) of thread `k` of `nt`.
BM_INLINE void thread_units(int64_t H, int k, int nt, int64_t& j0, int64_t& j1) {
  const int64_t chunks = (H + kUnitStep - 1) / kUnitStep;
  j0 = min64(H, chunks * k / nt * kUnitStep);
  j1 = min64(H, chunks * (k + 1) / nt * kUnitStep);
}

BM_INLINE GemmOperand strided(const void* data, int64_t rs, int64_t cs) {
  GemmOperand o;
  o.kind = GemmOperandKind::strided;
  o.data = data;
  o.rs = rs;
  o.cs = cs;
  return o;
}

BM_INLINE GemmOperand packed(const GemmPacked* pk) {
  GemmOperand o;
  o.kind = GemmOperandKind::packed;
  o.packed = pk;
  return o;
}

// Packs the K x w matrix B(k, n) = src[k * rs + n * cs] (a slice of W_hh or W_hh^T) into `dst`.
GemmPacked pack_b(DType dt, const void* src, int64_t rs, int64_t cs, int64_t K, int64_t w, void* dst) {
  GemmPackParams pp;
  pp.dtype = dt;
  pp.side = GemmSide::b;
  pp.outer = w;
  pp.K = K;
  pp.src = strided(src, rs, cs);
  pp.dst = dst;
  pp.num_threads = 1;
  return gemm_pack(pp);
}

// Packs the rows x K row-major matrix src (leading dimension K) as an A operand into `dst`.
GemmPacked pack_a(DType dt, const void* src, int64_t rows, int64_t K, void* dst) {
  GemmPackParams pp;
  pp.dtype = dt;
  pp.side = GemmSide::a;
  pp.outer = rows;
  pp.K = K;
  pp.src = strided(src, K, 1);
  pp.dst = dst;
  pp.num_threads = 1;
  return gemm_pack(pp);
}

BM_INLINE int64_t align64(int64_t bytes) { return (bytes + 63) & ~int64_t(63); }

// Number of rows with lengths[b] > s (lengths non-increasing); B without lengths.
BM_INLINE int64_t active_rows(const int64_t* lengths, int64_t B, int64_t s) {
  if (!lengths) return B;
  int64_t lo = 0, hi = B;  // first row with lengths <= s
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (lengths[mid] > s)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// ---- forward -----------------------------------------------------------------------------------

template <typename T>
void forward_impl(const LstmParams& p) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  T* gates = static_cast<T*>(p.gates);
  T* cells = static_cast<T*>(p.cells);
  T* output = static_cast<T*>(p.output);
  const T* h0 = static_cast<const T*>(p.h0);
  const T* c0 = static_cast<const T*>(p.c0);

  // 1. Input projection of every step, both biases folded into one per-column bias.
  {
    Buffer bias;
    GemmParams gp;
    gp.dtype = p.dtype;
    gp.M = T_ * B;
    gp.N = G4;
    gp.K = I;
    gp.a = strided(p.input, I, 1);
    gp.b = strided(p.w_ih, 1, I);
    gp.c = gates;
    gp.rs_c = G4;
    gp.cs_c = 1;
    if (p.has_bias) {
      bias.reset(G4 * sizeof(T));
      T* b = reinterpret_cast<T*>(bias.data());
      const T* bi = static_cast<const T*>(p.b_ih);
      const T* bh = static_cast<const T*>(p.b_hh);
      for (int64_t r = 0; r < G4; ++r) b[r] = bi[r] + bh[r];
      gp.epilogue.bias_kind = GemmBias::per_col;
      gp.epilogue.bias = b;
    }
    gp.num_threads = p.num_threads;
    if (gp.M > 0) gemm(gp);
  }

  // h_{t-1} for the recurrent GEMM: two (B, H) buffers, so that rows past their length can
  // carry their state while output[t] gets zeros.
  Buffer hbuf(2 * B * H * sizeof(T));
  T* hb[2] = {reinterpret_cast<T*>(hbuf.data()), reinterpret_cast<T*>(hbuf.data()) + B * H};
  const int nt = recurrence_threads(p);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int k = omp_get_thread_num(), n_threads = omp_get_num_threads();
    int64_t j0, j1;
    thread_units(H, k, n_threads, j0, j1);
    const int64_t w = j1 - j0;

    // The four W_hh^T slices (K = H, N = w) this thread multiplies by, packed once; h_{t-1}
    // packed once per step (the A operand of all four products); GEMM scratch.
    Buffer pack_mem, h_packed_mem, scratch;
    GemmPacked pk[4], h_packed;
    GemmParams gp;
    if (w > 0 && T_ > 0 && B > 0) {
      const int64_t pb = align64(gemm_packed_bytes(p.dtype, GemmSide::b, w, H));
      pack_mem.reset(4 * pb);
      for (int q = 0; q < 4; ++q)
        pk[q] = pack_b(p.dtype, static_cast<const T*>(p.w_hh) + (q * H + j0) * H, 1, H, H, w, pack_mem.data() + q * pb);
      gp.dtype = p.dtype;
      gp.M = B;
      gp.N = w;
      gp.K = H;
      h_packed_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::a, B, H));
      h_packed = pack_a(p.dtype, h0, B, H, h_packed_mem.data());
      gp.a = packed(&h_packed);
      gp.b = packed(&pk[0]);
      gp.c = gates + j0;
      gp.rs_c = G4;
      gp.cs_c = 1;
      gp.beta = 1.0;
      scratch.reset(gemm_scratch_bytes(gp) + 64);
    }

    for (int64_t s = 0; s < T_; ++s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t t_prev = p.reverse ? t + 1 : t - 1;
      const T* h_prev = s == 0 ? h0 : hb[(s - 1) & 1];
      T* h_next = hb[s & 1];
      const T* c_prev_all = s == 0 ? c0 : cells + t_prev * B * H;
      T* g_t = gates + t * B * G4;
      const int64_t rows = active_rows(p.lengths, B, s);
      if (w > 0) {
        if (rows > 0 && H > 0) {
          gp.M = rows;
          h_packed = pack_a(p.dtype, h_prev, rows, H, h_packed_mem.data());
          for (int q = 0; q < 4; ++q) {
            gp.b = packed(&pk[q]);
            gp.c = g_t + q * H + j0;
            gemm_single_thread(gp, scratch.data(), scratch.bytes());
          }
        }
        for (int64_t b = 0; b < rows; ++b)
          cell_forward_row(g_t + b * G4, c_prev_all + b * H, cells + (t * B + b) * H, output + (t * B + b) * H,
                           h_next + b * H, H, j0, j1);
        for (int64_t b = rows; b < B; ++b) {  // past this row's length: carry the state
          copy_units(cells + (t * B + b) * H, c_prev_all + b * H, j0, j1);
          copy_units(h_next + b * H, h_prev + b * H, j0, j1);
          copy_units<T>(output + (t * B + b) * H, nullptr, j0, j1);
        }
      }
#pragma omp barrier
    }

    const T* h_last = T_ == 0 ? h0 : hb[(T_ - 1) & 1];
    const T* c_last = T_ == 0 ? c0 : cells + (p.reverse ? 0 : T_ - 1) * B * H;
    for (int64_t b = 0; b < B; ++b) {
      copy_units(static_cast<T*>(p.h_n) + b * H, h_last + b * H, j0, j1);
      copy_units(static_cast<T*>(p.c_n) + b * H, c_last + b * H, j0, j1);
    }
  }
}

// ---- backward ----------------------------------------------------------------------------------

template <typename T>
void backward_impl(const LstmParams& p) {
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G4 = 4 * H;
  const T* gates = static_cast<const T*>(p.gates);
  const T* cells = static_cast<const T*>(p.cells);
  const T* c0 = static_cast<const T*>(p.c0);
  const T* grad_output = static_cast<const T*>(p.grad_output);
  T* dG = static_cast<T*>(p.grad_gates);

  // dh_rec: dL/dh_t flowing back from step t+1 (grad_h_n at first); dc likewise for c.
  Buffer state(2 * B * H * sizeof(T));
  T* dh_rec = reinterpret_cast<T*>(state.data());
  T* dc = dh_rec + B * H;
  const int nt = recurrence_threads(p);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int k = omp_get_thread_num(), n_threads = omp_get_num_threads();
    int64_t j0, j1;
    thread_units(H, k, n_threads, j0, j1);
    const int64_t w = j1 - j0;

    Buffer pack_mem, scratch, bias_acc;
    GemmPacked pk;
    GemmParams gp;
    T* db = nullptr;
    if (w > 0 && T_ > 0 && B > 0) {
      // W_hh[:, j0:j1] as the K = 4H x N = w operand of dh_rec = dG_t W_hh.
      pack_mem.reset(gemm_packed_bytes(p.dtype, GemmSide::b, w, G4));
      pk = pack_b(p.dtype, static_cast<const T*>(p.w_hh) + j0, H, 1, G4, w, pack_mem.data());
      gp.dtype = p.dtype;
      gp.M = B;
      gp.N = w;
      gp.K = G4;
      gp.a = strided(dG, G4, 1);
      gp.b = packed(&pk);
      gp.c = dh_rec + j0;
      gp.rs_c = H;
      gp.cs_c = 1;
      scratch.reset(gemm_scratch_bytes(gp) + 64);
      bias_acc.reset(4 * w * sizeof(T));
      db = reinterpret_cast<T*>(bias_acc.data());
      for (int64_t r = 0; r < 4 * w; ++r) db[r] = T(0);
    }
    for (int64_t b = 0; b < B; ++b) {
      copy_units(dh_rec + b * H, static_cast<const T*>(p.grad_h_n) ? static_cast<const T*>(p.grad_h_n) + b * H : nullptr,
                 j0, j1);
      copy_units(dc + b * H, static_cast<const T*>(p.grad_c_n) ? static_cast<const T*>(p.grad_c_n) + b * H : nullptr,
                 j0, j1);
    }

    for (int64_t s = T_ - 1; s >= 0; --s) {
      const int64_t t = p.reverse ? T_ - 1 - s : s;
      const int64_t t_prev = p.reverse ? t + 1 : t - 1;
      const T* c_prev_all = s == 0 ? c0 : cells + t_prev * B * H;
      const int64_t rows = active_rows(p.lengths, B, s);
      T* dg_t = dG + t * B * G4;
      if (w > 0) {
        for (int64_t b = 0; b < rows; ++b) {
          const int64_t r = t * B + b;
          cell_backward_row(gates + r * G4, cells + r * H, c_prev_all + b * H,
                            grad_output ? grad_output + r * H : nullptr, dh_rec + b * H, dc + b * H, dg_t + b * G4,
                            db, H, j0, j1);
        }
        for (int64_t b = rows; b < B; ++b)  // past this row's length: no gate gradient
          for (int q = 0; q < 4; ++q) copy_units<T>(dg_t + b * G4 + q * H, nullptr, j0, j1);
      }
#pragma omp barrier
      if (w > 0 && rows > 0) {
        gp.M = rows;
        gp.a = strided(dg_t, G4, 1);
        gp.c = dh_rec + j0;
        gemm_single_thread(gp, scratch.data(), scratch.bytes());
      }
    }

    for (int64_t b = 0; b < B; ++b) {
      copy_units(static_cast<T*>(p.grad_h0) + b * H, dh_rec + b * H, j0, j1);
      copy_units(static_cast<T*>(p.grad_c0) + b * H, dc + b * H, j0, j1);
    }
    T* gb = static_cast<T*>(p.grad_bias);
    for (int q = 0; q < 4; ++q)
      for (int64_t j = j0; j < j1; ++j) gb[q * H + j] = db ? db[q * w + (j - j0)] : T(0);
  }

  // Weight and input gradients: one GEMM each over all T steps.
  {
    GemmParams gp;  // dW_ih (4H, I) = dG^T (4H, T*B) X (T*B, I)
    gp.dtype = p.dtype;
    gp.M = G4;
    gp.N = I;
    gp.K = T_ * B;
    gp.a = strided(dG, 1, G4);
    gp.b = strided(p.input, I, 1);
    gp.c = p.grad_w_ih;
    gp.rs_c = I;
    gp.num_threads = p.num_threads;
    if (I > 0) gemm(gp);
  }
  {
    // dW_hh (4H, H) = sum_t dG_t^T (4H, B) h_{t-1} (B, H): a batch-reduce GEMM whose item t is
    // the state before step t (h0 for the first step visited, else output at the previous time).
    Buffer items_mem(T_ * sizeof(void*) + 8);
    const void** items = reinterpret_cast<const void**>(items_mem.data());
    const T* output = static_cast<const T*>(p.output);
    for (int64_t t = 0; t < T_; ++t) {
      const bool first = p.reverse ? t == T_ - 1 : t == 0;
      items[t] = first ? p.h0 : static_cast<const void*>(output + (p.reverse ? t + 1 : t - 1) * B * H);
    }
    GemmParams gp;
    gp.dtype = p.dtype;
    gp.M = G4;
    gp.N = H;
    gp.K = B;
    gp.batch_count = T_;
    gp.a = strided(dG, 1, G4);
    gp.b.kind = GemmOperandKind::batch;
    gp.b.items = items;
    gp.b.rs = H;
    gp.b.cs = 1;
    gp.c = p.grad_w_hh;
    gp.rs_c = H;
    gp.num_threads = p.num_threads;
    gemm(gp);
  }
  if (T_ * B > 0 && I > 0) {
    GemmParams gp;  // dX (T*B, I) = dG (T*B, 4H) W_ih (4H, I)
    gp.dtype = p.dtype;
    gp.M = T_ * B;
    gp.N = I;
    gp.K = G4;
    gp.a = strided(dG, G4, 1);
    gp.b = strided(p.w_ih, I, 1);
    gp.c = p.grad_input;
    gp.rs_c = I;
    gp.num_threads = p.num_threads;
    gemm(gp);
  }
}

}  // namespace

void lstm_forward(const LstmParams& p) {
  if (p.dtype == DType::f64)
    forward_impl<double>(p);
  else
    forward_impl<float>(p);
}

void lstm_backward(const LstmParams& p) {
  if (p.dtype == DType::f64)
    backward_impl<double>(p);
  else
    backward_impl<float>(p);
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
