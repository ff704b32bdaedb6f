// Entry points of the CPU GEMM (kernels/include/bigmodel/gemm.h): parameter validation, then a
// jump to the active ISA path's engine in gemm_kernel.cpp. Everything that can be wrong with the
// parameters is reported here, as std::invalid_argument, before any thread starts.
#include "bigmodel/gemm.h"

#include <omp.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "cpu/dispatch.h"

namespace bigmodel::cpu {

BIGMODEL_ISA_DECLARE(GemmBlocking, gemm_blocking, (DType))
BIGMODEL_ISA_DECLARE(void, gemm_threaded, (const GemmParams&, int))
BIGMODEL_ISA_DECLARE(int64_t, gemm_scratch_bytes, (const GemmParams&))
BIGMODEL_ISA_DECLARE(void, gemm_single_thread, (const GemmParams&, void*))
BIGMODEL_ISA_DECLARE(void, gemm_pack, (const GemmPackParams&))
BIGMODEL_ISA_DECLARE(double, fma_peak_gflops, (int, double))

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("gemm: " + what); }

const char* side_name(GemmSide s) { return s == GemmSide::a ? "A" : "B"; }

void check_dtype(DType t) {
  if (t != DType::f32 && t != DType::f64)
    fail(std::string("dtype must be float32 or float64, got ") + dtype_name(t));
}

int64_t checked_k_total(int64_t K, int64_t batch_count) {
  if (K < 0) fail("K must be >= 0, got " + std::to_string(K));
  if (batch_count < 0) fail("batch_count must be >= 0, got " + std::to_string(batch_count));
  if (batch_count > 0 && K > std::numeric_limits<int64_t>::max() / batch_count)
    fail("batch_count * K overflows int64");
  return K * batch_count;
}

// An operand that is read (outer > 0 and Kt > 0) must point at data of the right form.
void check_operand(const GemmOperand& op, GemmSide side, DType dtype, int64_t outer, int64_t K, int64_t batch_count,
                   bool allow_packed) {
  const std::string name = side_name(side);
  const int64_t Kt = K * batch_count;
  switch (op.kind) {
    case GemmOperandKind::strided:
      if (outer > 0 && Kt > 0 && op.data == nullptr) fail(name + " is a null pointer");
      return;
    case GemmOperandKind::batch:
      if (outer > 0 && K > 0 && batch_count > 0) {
        if (op.items == nullptr) fail(name + ": batch operand without an items array");
        for (int64_t t = 0; t < batch_count; ++t)
          if (op.items[t] == nullptr) fail(name + ": batch item " + std::to_string(t) + " is a null pointer");
      }
      return;
    case GemmOperandKind::packed: {
      if (!allow_packed) fail(name + ": a packed operand cannot be packed again");
      const GemmPacked* pk = op.packed;
      if (pk == nullptr) fail(name + ": packed operand without a GemmPacked descriptor");
      if (pk->side != side)
        fail(name + " was packed as operand " + side_name(pk->side) + "; the layouts differ");
      if (pk->dtype != dtype)
        fail(name + " was packed as " + dtype_name(pk->dtype) + " but the GEMM is " + dtype_name(dtype));
      if (pk->isa != active_isa())
        fail(name + " was packed for the " + isa_name(pk->isa) + " path but the active path is " +
             isa_name(active_isa()) + "; pack it again");
      const GemmBlocking bl = gemm_blocking(dtype);
      const int panel = side == GemmSide::a ? bl.MR : bl.NR;
      if (pk->panel != panel) fail(name + ": packed panel width " + std::to_string(pk->panel) + " != " + std::to_string(panel));
      // A packed operand may be longer in k than the GEMM: its leading Kt reduction indices are used.
      if (pk->outer != outer || pk->k_total < Kt)
        fail(name + " was packed with outer " + std::to_string(pk->outer) + " and Kt " + std::to_string(pk->k_total) +
             " but this GEMM needs outer " + std::to_string(outer) + " and Kt (at least) " + std::to_string(Kt));
      if (outer > 0 && Kt > 0 && pk->data == nullptr) fail(name + ": packed data is a null pointer");
      return;
    }
  }
  fail(name + ": unknown operand kind");
}

// What the scratch size depends on: dtype, sizes and operand kinds (no pointers).
void check_shape(const GemmParams& p) {
  check_dtype(p.dtype);
  if (p.M < 0 || p.N < 0) fail("M and N must be >= 0, got M=" + std::to_string(p.M) + ", N=" + std::to_string(p.N));
  checked_k_total(p.K, p.batch_count);
  for (const GemmOperand* op : {&p.a, &p.b})
    if (op->kind != GemmOperandKind::strided && op->kind != GemmOperandKind::batch &&
        op->kind != GemmOperandKind::packed)
      fail(std::string(op == &p.a ? "A" : "B") + ": unknown operand kind");
}

void check_params(const GemmParams& p) {
  check_shape(p);
  check_operand(p.a, GemmSide::a, p.dtype, p.M, p.K, p.batch_count, true);
  check_operand(p.b, GemmSide::b, p.dtype, p.N, p.K, p.batch_count, true);
  if (p.M > 0 && p.N > 0 && p.c == nullptr) fail("C is a null pointer");
  if (p.epilogue.bias_kind != GemmBias::none && p.epilogue.bias == nullptr && p.M > 0 && p.N > 0)
    fail("a bias kind is set but bias is a null pointer");
  if (p.epilogue.bias_kind != GemmBias::none && p.epilogue.bias_kind != GemmBias::per_row &&
      p.epilogue.bias_kind != GemmBias::per_col)
    fail("unknown bias kind");
  if (p.epilogue.activation != GemmActivation::none && p.epilogue.activation != GemmActivation::relu)
    fail("unknown activation");
}

}  // namespace

GemmBlocking gemm_blocking(DType dtype) {
  check_dtype(dtype);
  BIGMODEL_ISA_CALL(gemm_blocking, dtype);
}

void gemm(const GemmParams& p) {
  check_params(p);
  const int threads = omp_in_parallel() ? 1 : (p.num_threads < 1 ? 1 : p.num_threads);
  BIGMODEL_ISA_CALL(gemm_threaded, p, threads);
}

int64_t gemm_scratch_bytes(const GemmParams& p) {
  check_shape(p);
  BIGMODEL_ISA_CALL(gemm_scratch_bytes, p);
}

void gemm_single_thread(const GemmParams& p, void* scratch, int64_t scratch_bytes) {
  check_params(p);
  const int64_t need = gemm_scratch_bytes(p);
  if (scratch_bytes < need || (need > 0 && scratch == nullptr))
    fail("scratch of " + std::to_string(scratch_bytes) + " bytes is too small; gemm_scratch_bytes() asks for " +
         std::to_string(need));
  BIGMODEL_ISA_CALL(gemm_single_thread, p, scratch);
}

int64_t gemm_packed_bytes(DType dtype, GemmSide side, int64_t outer, int64_t k_total) {
  check_dtype(dtype);
  if (outer < 0 || k_total < 0) fail("packed operand sizes must be >= 0");
  const GemmBlocking bl = gemm_blocking(dtype);
  const int64_t panel = side == GemmSide::a ? bl.MR : bl.NR;
  const int64_t panels = (outer + panel - 1) / panel;
  const int64_t elem = dtype == DType::f64 ? 8 : 4;
  if (panels > 0 && k_total > std::numeric_limits<int64_t>::max() / (panels * panel * elem))
    fail("packed operand size overflows int64");
  return panels * panel * k_total * elem;
}

GemmPacked gemm_pack(const GemmPackParams& p) {
  check_dtype(p.dtype);
  if (p.side != GemmSide::a && p.side != GemmSide::b) fail("unknown side");
  if (p.outer < 0) fail("outer must be >= 0, got " + std::to_string(p.outer));
  const int64_t Kt = checked_k_total(p.K, p.batch_count);
  check_operand(p.src, p.side, p.dtype, p.outer, p.K, p.batch_count, false);
  const int64_t bytes = gemm_packed_bytes(p.dtype, p.side, p.outer, Kt);
  if (bytes > 0 && p.dst == nullptr) fail("pack destination is a null pointer");
  const GemmBlocking bl = gemm_blocking(p.dtype);
  GemmPacked out;
  out.dtype = p.dtype;
  out.isa = active_isa();
  out.side = p.side;
  out.outer = p.outer;
  out.k_total = Kt;
  out.panel = p.side == GemmSide::a ? bl.MR : bl.NR;
  out.data = p.dst;
  if (bytes > 0) {
    GemmPackParams q = p;
    q.num_threads = omp_in_parallel() ? 1 : (p.num_threads < 1 ? 1 : p.num_threads);
    [&] { BIGMODEL_ISA_CALL(gemm_pack, q); }();
  }
  return out;
}

double fma_peak_gflops(int num_threads, double seconds) {
  if (num_threads < 1) fail("fma_peak_gflops: num_threads must be >= 1");
  if (!(seconds > 0)) fail("fma_peak_gflops: seconds must be > 0");
  BIGMODEL_ISA_CALL(fma_peak_gflops, num_threads, seconds);
}

}  // namespace bigmodel::cpu
