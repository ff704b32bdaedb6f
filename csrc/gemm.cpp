// GEMM ops: the CPU engine of kernels/include/bigmodel/gemm.h exposed for testing, benchmarking
// and autograd. Operands are passed with their strides, so transposed and sliced views cost no copy.
//
//   gemm(a, b, c=None, alpha=1, beta=0)            alpha * a @ b + beta * c   (new tensor)
//   gemm_(c, a, b, alpha=1, beta=1)                c = alpha * a @ b + beta * c, in place (returns nothing)
//   gemm_batch_reduce(a, b, c=None, alpha, beta)   alpha * sum_t a[t] @ b[t] + beta * c
//   gemm_pack(x, side)                             x packed as operand 'a' or 'b' (uint8 buffer)
//   gemm_prepacked(a, b, c=None, alpha, beta)      as gemm; a and/or b may be gemm_pack buffers
//
// CPU only, by design: the GEMM core is the engine the CPU kernels share (the CUDA kernels tile
// their own products). The checks shared with the test-only epilogue op live in gemm_checks.h.
#include <torch/library.h>

#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "gemm_checks.h"

namespace bigmodel::binding {
namespace {

// A gemm_pack buffer is a 1-D uint8 tensor: this header, then the packed panels (64 bytes in, so
// a 64-byte-aligned tensor keeps them 64-byte aligned).
struct PackedHeader {
  char magic[8];
  int32_t dtype, isa, side, panel;
  int64_t outer, k_total, data_bytes;
};
constexpr int64_t kHeaderBytes = 64;
static_assert(sizeof(PackedHeader) <= kHeaderBytes);
constexpr char kMagic[8] = {'B', 'M', 'G', 'E', 'M', 'M', 'P', '1'};

bool is_packed(const at::Tensor& t) { return t.scalar_type() == at::kByte; }

// The descriptor of a gemm_pack buffer, after checking that it is one and fits the active path.
GemmPacked read_packed(const char* op, const char* arg, const at::Tensor& t, GemmSide side) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.is_contiguous() && t.numel() >= kHeaderBytes, op, ": ", arg,
                    " is a uint8 tensor but not a buffer made by gemm_pack (expected a contiguous 1-D "
                    "uint8 tensor of at least ", kHeaderBytes, " bytes, got shape ", t.sizes(), ")");
  PackedHeader h;
  std::memcpy(&h, t.const_data_ptr(), sizeof(h));
  TORCH_CHECK_VALUE(std::memcmp(h.magic, kMagic, sizeof(kMagic)) == 0, op, ": ", arg,
                    " is a uint8 tensor but not a buffer made by gemm_pack (bad header)");
  TORCH_CHECK_VALUE(h.side == static_cast<int>(side), op, ": ", arg, " was packed as operand '",
                    h.side == 0 ? "a" : "b", "' but is used as operand '", side == GemmSide::a ? "a" : "b", "'");
  TORCH_CHECK_VALUE(h.data_bytes >= 0 && t.numel() - kHeaderBytes >= h.data_bytes, op, ": ", arg,
                    " is truncated: the header promises ", h.data_bytes, " bytes of panels");
  GemmPacked p;
  p.dtype = static_cast<DType>(h.dtype);
  p.isa = static_cast<Isa>(h.isa);
  p.side = side;
  p.outer = h.outer;
  p.k_total = h.k_total;
  p.panel = h.panel;
  p.data = static_cast<const uint8_t*>(t.const_data_ptr()) + kHeaderBytes;
  TORCH_CHECK_VALUE(p.dtype == DType::f32 || p.dtype == DType::f64, op, ": ", arg, " has a corrupt header");
  TORCH_CHECK_VALUE(p.isa == active_isa(), op, ": ", arg, " was packed for the ", isa_name(p.isa),
                    " path but the active path is ", isa_name(active_isa()), "; call gemm_pack again");
  return p;
}

at::ScalarType scalar_type_of(DType d) { return d == DType::f64 ? at::kDouble : at::kFloat; }

// Checks c against the result's shape (torch.addmm's broadcasting rule) and, where it will be
// read (beta != 0), copies it into out; with beta == 0, c's values are ignored, NaN included.
void init_output(const char* op, at::Tensor& out, const std::optional<at::Tensor>& c, double beta) {
  if (!c.has_value()) return;
  TORCH_CHECK_TYPE(c->scalar_type() == out.scalar_type(), op, ": c has dtype ", c->scalar_type(),
                   " but a and b have dtype ", out.scalar_type());
  TORCH_CHECK_VALUE(c->device().is_cpu(), op, ": c must be a CPU tensor, got one on ", c->device());
  TORCH_CHECK_VALUE(c->dim() <= 2, op, ": c must have at most 2 dimensions, got shape ", c->sizes());
  bool ok = true;
  for (int64_t d = 1; d <= c->dim(); ++d) {
    const int64_t cs = c->size(-d), os = out.size(-d);
    ok = ok && (cs == os || cs == 1);
  }
  TORCH_CHECK_VALUE(ok, op, ": c of shape ", c->sizes(), " cannot be broadcast to the result's shape ", out.sizes());
  if (beta != 0.0) out.copy_(c->expand(out.sizes()));
}

GemmParams base_params(const at::Tensor& out, int64_t M, int64_t N, int64_t K, double alpha, double beta,
                       const std::optional<at::Tensor>& c) {
  GemmParams p;
  p.dtype = to_dtype(out.scalar_type());
  p.M = M;
  p.N = N;
  p.K = K;
  p.c = out.mutable_data_ptr();
  p.rs_c = out.stride(0);
  p.cs_c = out.stride(1);
  p.alpha = alpha;
  p.beta = c.has_value() ? beta : 0.0;
  p.num_threads = num_threads();
  return p;
}

at::Tensor gemm(const GemmKernel& kernel, const at::Tensor& a, const at::Tensor& b,
                const std::optional<at::Tensor>& c, double alpha, double beta) {
  const char* op = "gemm";
  check_matrix(op, "a", a);
  check_matrix(op, "b", b);
  check_same(op, "b", b, "a", a);
  TORCH_CHECK_VALUE(a.size(1) == b.size(0), op, ": a has shape ", a.sizes(), " and b has shape ", b.sizes(),
                    "; b.size(0) must equal a.size(1)");
  at::Tensor out = empty_activation({a.size(0), b.size(1)}, a.options());
  init_output(op, out, c, beta);
  GemmParams p = base_params(out, a.size(0), b.size(1), a.size(1), alpha, beta, c);
  p.a = strided(a);
  p.b = strided(b);
  run_kernel([&] { kernel(p); });
  return out;
}

void gemm_(const GemmKernel& kernel, at::Tensor& c, const at::Tensor& a, const at::Tensor& b, double alpha,
           double beta) {
  const GemmParams p = inplace_params("gemm_", c, a, b, alpha, beta);
  run_kernel([&] { kernel(p); });
}

// Operand t of a batch-reduce: a 3-D (T, rows, cols) float tensor read through per-item pointers,
// or a gemm_pack buffer of the concatenated (T*K) matrix.
struct BatchOperand {
  GemmOperand op;
  GemmPacked packed;
  std::vector<const void*> items;
  bool is_packed = false;
  int64_t T = 0, rows = 0, cols = 0;  // 3-D only
  at::ScalarType dtype = at::kFloat;
};

void read_batch_operand(const char* op, const char* name, const at::Tensor& t, GemmSide side, BatchOperand& out) {
  if (is_packed(t)) {
    out.packed = read_packed(op, name, t, side);
    out.is_packed = true;
    out.op.kind = GemmOperandKind::packed;
    out.dtype = scalar_type_of(out.packed.dtype);
    return;
  }
  TORCH_CHECK_VALUE(t.layout() == at::kStrided, op, ": ", name, " must be a dense (strided) tensor");
  TORCH_CHECK_VALUE(t.dim() == 3, op, ": ", name, " must be 3-D (batch, rows, cols) or a gemm_pack buffer, got shape ",
                    t.sizes());
  check_float_dtype(op, name, t);
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got one on ", t.device());
  out.T = t.size(0);
  out.rows = t.size(1);
  out.cols = t.size(2);
  out.dtype = t.scalar_type();
  const int64_t esize = static_cast<int64_t>(t.element_size());
  out.items.resize(out.T);
  for (int64_t i = 0; i < out.T; ++i)
    out.items[i] = static_cast<const char*>(t.const_data_ptr()) + i * t.stride(0) * esize;
  out.op.kind = GemmOperandKind::batch;
  out.op.rs = t.stride(1);
  out.op.cs = t.stride(2);
}

at::Tensor gemm_batch_reduce(const GemmKernel& kernel, const at::Tensor& a, const at::Tensor& b,
                             const std::optional<at::Tensor>& c, double alpha, double beta) {
  const char* op = "gemm_batch_reduce";
  BatchOperand A, B;
  read_batch_operand(op, "a", a, GemmSide::a, A);
  read_batch_operand(op, "b", b, GemmSide::b, B);
  TORCH_CHECK_TYPE(A.dtype == B.dtype, op, ": a holds ", A.dtype, " but b holds ", B.dtype);
  TORCH_CHECK_VALUE(a.device() == b.device(), op, ": a is on ", a.device(), " but b is on ", b.device());
  int64_t M, N, K, T;
  if (!A.is_packed && !B.is_packed) {
    TORCH_CHECK_VALUE(A.T == B.T && A.cols == B.rows, op, ": a has shape ", a.sizes(), " and b has shape ", b.sizes(),
                      "; expected (T, M, K) and (T, K, N)");
    M = A.rows, N = B.cols, K = A.cols, T = A.T;
  } else if (A.is_packed && B.is_packed) {
    TORCH_CHECK_VALUE(A.packed.k_total == B.packed.k_total, op, ": packed a has Kt ", A.packed.k_total,
                      " but packed b has Kt ", B.packed.k_total);
    M = A.packed.outer, N = B.packed.outer, K = A.packed.k_total, T = 1;
  } else if (A.is_packed) {
    M = A.packed.outer, N = B.cols, K = B.rows, T = B.T;
    TORCH_CHECK_VALUE(A.packed.k_total == T * K, op, ": packed a has Kt ", A.packed.k_total, " but b (shape ",
                      b.sizes(), ") needs T * K = ", T * K);
  } else {
    M = A.rows, N = B.packed.outer, K = A.cols, T = A.T;
    TORCH_CHECK_VALUE(B.packed.k_total == T * K, op, ": packed b has Kt ", B.packed.k_total, " but a (shape ",
                      a.sizes(), ") needs T * K = ", T * K);
  }
  at::Tensor out = empty_activation({M, N}, a.options().dtype(A.dtype));
  init_output(op, out, c, beta);
  GemmParams p = base_params(out, M, N, K, alpha, beta, c);
  p.batch_count = T;
  p.a = A.op;
  p.b = B.op;
  if (A.is_packed) p.a.packed = &A.packed;
  if (B.is_packed) p.b.packed = &B.packed;
  if (!A.is_packed) p.a.items = A.items.data();
  if (!B.is_packed) p.b.items = B.items.data();
  run_kernel([&] { kernel(p); });
  return out;
}


GemmSide parse_side(const char* op, c10::string_view side) {
  TORCH_CHECK_VALUE(side == "a" || side == "b", op, ": side must be 'a' or 'b', got '", std::string(side), "'");
  return side == "a" ? GemmSide::a : GemmSide::b;
}

at::Tensor gemm_pack(const GemmPackKernel& kernel, const at::Tensor& x, c10::string_view side_name) {
  const char* op = "gemm_pack";
  const GemmSide side = parse_side(op, side_name);
  GemmPackParams pp;
  BatchOperand batch;
  if (x.dim() == 3) {  // (T, rows, cols): the concatenated-K matrix of a batch-reduce operand
    read_batch_operand(op, "x", x, side, batch);
    pp.src = batch.op;
    pp.src.items = batch.items.data();
    pp.batch_count = batch.T;
  } else {
    check_matrix(op, "x", x);
    pp.src = strided(x);
  }
  // side a: x is op(A), M x K; side b: x is op(B), K x N (per item).
  const int64_t outer = side == GemmSide::a ? x.size(-2) : x.size(-1);
  const int64_t k = side == GemmSide::a ? x.size(-1) : x.size(-2);
  const DType dtype = to_dtype(x.scalar_type());
  const int64_t k_total = k * pp.batch_count;
  int64_t bytes = 0;
  run_kernel([&] { bytes = kernel.bytes(dtype, side, outer, k_total); });
  at::Tensor buf = at::empty({kHeaderBytes + bytes}, x.options().dtype(at::kByte));
  pp.dtype = dtype;
  pp.side = side;
  pp.outer = outer;
  pp.K = k;
  pp.dst = static_cast<uint8_t*>(buf.mutable_data_ptr()) + kHeaderBytes;
  pp.num_threads = num_threads();
  GemmPacked packed;
  run_kernel([&] { packed = kernel.pack(pp); });
  PackedHeader h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.dtype = static_cast<int32_t>(packed.dtype);
  h.isa = static_cast<int32_t>(packed.isa);
  h.side = static_cast<int32_t>(packed.side);
  h.panel = packed.panel;
  h.outer = packed.outer;
  h.k_total = packed.k_total;
  h.data_bytes = bytes;
  std::memset(buf.mutable_data_ptr(), 0, kHeaderBytes);
  std::memcpy(buf.mutable_data_ptr(), &h, sizeof(h));
  return buf;
}

// One operand of gemm_prepacked: a gemm_pack buffer or a 2-D matrix, with its (outer, K) sizes
// (outer is M for side a, N for side b) and element type.
struct PrepackedOperand {
  GemmPacked packed;
  GemmOperand op;
  int64_t outer = 0, k = 0;
  at::ScalarType dtype = at::kFloat;
};

void read_prepacked_operand(const char* op, const char* name, const at::Tensor& t, GemmSide side,
                            PrepackedOperand& out) {
  if (is_packed(t)) {
    out.packed = read_packed(op, name, t, side);
    out.op.kind = GemmOperandKind::packed;
    out.op.packed = &out.packed;
    out.outer = out.packed.outer;
    out.k = out.packed.k_total;
    out.dtype = scalar_type_of(out.packed.dtype);
  } else {
    check_matrix(op, name, t);
    out.op = strided(t);
    out.outer = side == GemmSide::a ? t.size(0) : t.size(1);
    out.k = side == GemmSide::a ? t.size(1) : t.size(0);
    out.dtype = t.scalar_type();
  }
}

at::Tensor gemm_prepacked(const GemmKernel& kernel, const at::Tensor& a, const at::Tensor& b,
                          const std::optional<at::Tensor>& c, double alpha, double beta) {
  const char* op = "gemm_prepacked";
  PrepackedOperand A, B;
  read_prepacked_operand(op, "a", a, GemmSide::a, A);
  read_prepacked_operand(op, "b", b, GemmSide::b, B);
  TORCH_CHECK_TYPE(A.dtype == B.dtype, op, ": a holds ", A.dtype, " but b holds ", B.dtype);
  TORCH_CHECK_VALUE(a.device() == b.device() && a.device().is_cpu(), op, ": a and b must both be CPU tensors");
  TORCH_CHECK_VALUE(A.k == B.k, op, ": a is ", A.outer, " x ", A.k, " but b is ", B.k, " x ", B.outer,
                    "; the inner dimensions must match");
  at::Tensor out = empty_activation({A.outer, B.outer}, a.options().dtype(A.dtype));
  init_output(op, out, c, beta);
  GemmParams p = base_params(out, A.outer, B.outer, A.k, alpha, beta, c);
  p.a = A.op;
  p.b = B.op;
  run_kernel([&] { kernel(p); });
  return out;
}

}  // namespace
}  // namespace bigmodel::binding

TORCH_LIBRARY_IMPL(bigmodel, CPU, m) {
  using namespace bigmodel;
  m.impl("gemm", binding::bind(&binding::gemm, cpu::gemm));
  m.impl("gemm_", binding::bind(&binding::gemm_, cpu::gemm));
  m.impl("gemm_batch_reduce", binding::bind(&binding::gemm_batch_reduce, cpu::gemm));
  m.impl("gemm_pack", binding::bind(&binding::gemm_pack, binding::GemmPackKernel{cpu::gemm_packed_bytes,
                                                                                  cpu::gemm_pack}));
  m.impl("gemm_prepacked", binding::bind(&binding::gemm_prepacked, cpu::gemm));
}
