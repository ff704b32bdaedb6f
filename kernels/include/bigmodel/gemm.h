// The CPU GEMM core: C = alpha * op(A) * op(B) + beta * C, plus the batch-reduce, pre-packed and
// fused-epilogue forms that convolution, LSTM and attention build on.
//
// Design (Goto / BLIS): B is packed into KC x NR column panels, A into MC x KC blocks of MR-row
// panels, and an MR x NR register-tile micro-kernel does all the arithmetic, looping over KC.
// MR, NR, MC, KC and NC are the GEMM literature's names; their values live in one table per ISA
// path and per dtype (kernels/cpu/gemm/gemm_kernel.cpp) and can be read with gemm_blocking().
//
// ---------------------------------------------------------------------------------------------
// Operands and shapes
//
//   C is M x N.  op(A) is M x Kt and op(B) is Kt x N, where Kt = batch_count * K.
//
// Every operand is described by strides in elements, so "transposed" is not a flag: element
// (r, c) of a strided operand is data[r * rs + c * cs]. A row-major matrix with leading
// dimension ld has (rs, cs) = (ld, 1); its transpose is the same memory with (rs, cs) = (1, ld).
// Any strides work for A and B (including 0 and non-unit on both sides). C may have any strides
// whose elements do not overlap each other or A / B. Fast paths: A and B with either stride 1
// (contiguous rows are copied, contiguous columns transposed in registers while packing), and
// C with cs_c == 1; a C with rs_c == 1 is computed as C^T = B^T A^T (unless an operand is
// pre-packed), any other C goes through a per-tile scatter.
//
// Batch-reduce. C = alpha * sum_{t < batch_count} A_t * B_t + beta * C, each A_t M x K and each
// B_t K x N, accumulated into the same register tile (no partial C is written per t). This is
// a GEMM whose reduction dimension is the concatenation of the K ranges, so an operand may be
//   - kind strided: ONE matrix of the concatenated extent (M x Kt for A, Kt x N for B), or
//   - kind batch:   batch_count matrices (items[t]), all with the same strides (rs, cs), each
//                   M x K (A) or K x N (B); item t supplies reduction indices [t*K, (t+1)*K), or
//   - kind packed:  a pre-packed copy of the concatenated matrix (see "Packed formats").
// Convolution: A_t = weights of tap t, B_t = input shifted by tap t (or the reverse for NHWC);
// the weights can be packed once as the concatenated (taps*IC) matrix.
//
// ---------------------------------------------------------------------------------------------
// Packed formats (what gemm_pack writes and what the micro-kernel reads)
//
// A packed operand is split along its "outer" dimension (M for A, N for B) into panels of
// `panel` = MR (A) or NR (B) rows/columns. Panel p holds outer indices [p*panel, (p+1)*panel)
// for the whole concatenated reduction range, k-major:
//
//   element (outer = p*panel + q, k)  at  data[(p * Kt + k) * panel + q],   0 <= q < panel
//
// Entries of the last panel past `outer` are zero. The layout does not depend on KC, so a
// caller may use any k-range of a packed operand: a GEMM whose Kt = batch_count * K is smaller
// than the operand's k_total reads the leading Kt reduction indices of every panel (the panel
// stride stays k_total * panel), e.g. the first `keys` of a packed key block. Its outer must
// match exactly, and k_total < Kt is an error. MR / NR depend on the ISA path and dtype, so
// a packed operand is tied to the path that packed it (GemmPacked::isa); using it on another
// path is an error (std::invalid_argument), as is a dtype or size mismatch. The packed data is
// read-only during a GEMM and may be shared by any number of threads and calls.
//
// ---------------------------------------------------------------------------------------------
// Epilogue contract
//
// The final value of each C element is
//
//   C = act(alpha * op(A) op(B) + beta * C_old + bias)      then   callback(tile)
//
// - beta == 0 means C_old is never read (NaN or garbage in C is overwritten, not multiplied).
// - bias is optional, one value per row (length M) or per column (length N), contiguous, the
//   dtype of C. act is applied element-wise in the register tile (relu follows torch: NaN stays).
// - K == 0 (or batch_count == 0) is valid: C = act(beta * C_old + bias), callback included.
// - callback, if set, is called exactly once for every C element, on rectangles that partition
//   C, each after its values are final (bias and act included) and while it is still in cache.
//   Today a rectangle is one micro-tile (at most MR x NR); callers must not rely on its size.
//   `c` points at C(row0, col0); element (i, j) of the rectangle is c[i * rs_c + j * cs_c].
//   Rectangles of one call may be handed to different threads at the same time, so the callback
//   must be safe to run concurrently on disjoint rectangles. It must not throw.
//
// ---------------------------------------------------------------------------------------------
// Threading
//
// gemm() is the standalone multi-threaded GEMM: it opens one OpenMP region of up to
// p.num_threads threads (one below ~0.5 M multiply-adds, where a fork costs more than it saves),
// splits C into one rectangle per thread (whole MR / NR panels; the split weighs each thread's
// FMAs against the operand it must pack again), and each thread packs what it needs into its own
// slice of one scratch allocation: no shared writes, no atomics, and results that are bitwise
// identical for any thread count (each element is reduced in the same order). Called from
// inside an active OpenMP parallel region it runs on the calling thread only (never nested).
//
// gemm_single_thread() is for callers that run their own parallel region (conv, attention,
// LSTM): it uses no OpenMP and allocates nothing; the caller passes scratch of at least
// gemm_scratch_bytes(p) bytes, one buffer per thread. It is otherwise identical to gemm().
//
// Errors: invalid parameters (negative sizes, a null pointer where data is needed, dtype other
// than f32/f64, a packed operand from another ISA path / dtype / size, too little scratch) throw
// std::invalid_argument before any work starts. Nothing is thrown from inside a parallel region.
//
// float32 is the tuned path; float64 runs through the same code (its own MR / NR), accurate
// enough for gradcheck but not tuned. Accumulation is in the operands' dtype.
#pragma once

#include <cstdint>

#include "bigmodel/common.h"
#include "bigmodel/isa.h"

namespace bigmodel {

enum class GemmSide : int { a = 0, b = 1 };

// A pre-packed operand (see "Packed formats" above). Filled by cpu::gemm_pack; the memory at
// `data` belongs to the caller and must stay alive and unchanged while the descriptor is used.
struct GemmPacked {
  DType dtype = DType::f32;
  Isa isa = Isa::generic;       // the path whose MR / NR the layout uses
  GemmSide side = GemmSide::b;  // a: MR-row panels of an M x Kt matrix; b: NR-column panels of Kt x N
  int64_t outer = 0;            // M (side a) or N (side b)
  int64_t k_total = 0;          // the concatenated reduction length packed (a GEMM may use a prefix)
  int panel = 0;                // MR (side a) or NR (side b)
  const void* data = nullptr;   // ceil(outer / panel) * k_total * panel elements
};

enum class GemmOperandKind : int { strided = 0, batch = 1, packed = 2 };

struct GemmOperand {
  GemmOperandKind kind = GemmOperandKind::strided;
  const void* data = nullptr;            // strided: the whole concatenated matrix
  const void* const* items = nullptr;    // batch: batch_count pointers, one per item
  int64_t rs = 0, cs = 0;                // strided / batch: element (r, c) at ptr[r * rs + c * cs]
  const GemmPacked* packed = nullptr;    // packed
};

enum class GemmBias : int { none = 0, per_row = 1, per_col = 2 };
enum class GemmActivation : int { none = 0, relu = 1 };

// Called on finished rectangles of C; see "Epilogue contract". `c` has the dtype of C.
using GemmTileCallback = void (*)(void* ctx, void* c, int64_t rs_c, int64_t cs_c, int64_t row0, int64_t col0,
                                  int64_t rows, int64_t cols);

struct GemmEpilogue {
  GemmBias bias_kind = GemmBias::none;
  const void* bias = nullptr;  // length M (per_row) or N (per_col), contiguous, dtype of C
  GemmActivation activation = GemmActivation::none;
  GemmTileCallback callback = nullptr;
  void* callback_ctx = nullptr;
};

struct GemmParams {
  DType dtype = DType::f32;  // of A, B, C and bias: f32 or f64
  int64_t M = 0, N = 0;      // C is M x N
  int64_t K = 0;             // reduction length of ONE batch item
  int64_t batch_count = 1;   // number of products summed; 1 for a plain GEMM
  GemmOperand a;             // op(A): M x (batch_count * K)
  GemmOperand b;             // op(B): (batch_count * K) x N
  void* c = nullptr;         // C(i, j) at c[i * rs_c + j * cs_c]; must not overlap A or B
  int64_t rs_c = 0, cs_c = 1;
  double alpha = 1.0, beta = 0.0;  // converted to the dtype before use
  GemmEpilogue epilogue;
  int num_threads = 1;       // gemm() only; gemm_single_thread() ignores it
};

// What gemm_pack needs: the matrix to pack (an A side M x Kt or a B side Kt x N, given as a
// strided or batch operand exactly as in GemmParams), and where to write it.
struct GemmPackParams {
  DType dtype = DType::f32;
  GemmSide side = GemmSide::b;
  int64_t outer = 0;          // M (side a) or N (side b)
  int64_t K = 0;              // per item, as GemmParams::K
  int64_t batch_count = 1;
  GemmOperand src;            // kind strided or batch
  void* dst = nullptr;        // gemm_packed_bytes(dtype, side, outer, batch_count * K) bytes; 64-byte
                              // alignment is recommended (loads are unaligned-safe either way)
  int num_threads = 1;
};

// The block-size table of the active ISA path for one dtype (values in elements).
struct GemmBlocking {
  int MR = 0, NR = 0;          // register tile
  int64_t MC = 0, KC = 0, NC = 0;  // cache blocks: A block MC x KC (L2), B panel KC x NC (L3)
};

namespace cpu {

GemmBlocking gemm_blocking(DType dtype);

// The standalone multi-threaded GEMM (see "Threading").
void gemm(const GemmParams& p);

// Scratch for gemm_single_thread(p): packing buffers sized for this problem (0 when both
// operands are pre-packed). Depends on the active ISA path and on p's dtype, sizes, operand
// kinds and C strides only: pointers (data, items, packed, c, bias) may still be null, so
// per-thread scratch can be sized before the operands exist. The same figure fits any problem
// with the same dtype, kinds and C strides whose M, N and batch_count * K are no larger.
int64_t gemm_scratch_bytes(const GemmParams& p);

// One thread, no OpenMP, no allocation: for use inside a caller's parallel region.
void gemm_single_thread(const GemmParams& p, void* scratch, int64_t scratch_bytes);

// Bytes of a packed operand for the active ISA path.
int64_t gemm_packed_bytes(DType dtype, GemmSide side, int64_t outer, int64_t k_total);

// Packs p.src into p.dst (using up to p.num_threads threads; one when called inside a parallel
// region) and returns the descriptor to put in GemmOperand::packed.
GemmPacked gemm_pack(const GemmPackParams& p);

// Measured fp32 FMA throughput of the active ISA path, in GFLOP/s: every thread runs a loop of
// independent register FMAs (no memory traffic) for about `seconds` of its own CPU time (best of
// four slices); the figure is the sum over threads of 2 * lanes * FMAs / CPU seconds. Timing CPU
// time keeps other processes on a shared machine from lowering the ceiling. This is the figure
// the GEMM's "% of peak" is taken against.
double fma_peak_gflops(int num_threads, double seconds);

}  // namespace cpu

// ---------------------------------------------------------------------------------------------
// Usage sketches (float32; error handling omitted)
//
// LSTM, one step: gates(B, 4H) = h(B, H) x W_hh^T, W_hh (4H, H) row-major, packed once:
//   GemmPackParams pk{.dtype = DType::f32, .side = GemmSide::b, .outer = 4 * H, .K = H,
//                     .src = {.data = W_hh, .rs = 1, .cs = H}};        // W_hh^T as a K x N view
//   std::vector<char> buf(cpu::gemm_packed_bytes(DType::f32, GemmSide::b, 4 * H, H));
//   pk.dst = buf.data();
//   const GemmPacked w = cpu::gemm_pack(pk);
//   GemmParams p{.M = B, .N = 4 * H, .K = H, .a = {.data = h, .rs = H, .cs = 1},
//                .b = {.kind = GemmOperandKind::packed, .packed = &w},
//                .c = gates, .rs_c = 4 * H, .cs_c = 1, .beta = 1.0,      // += input projection
//                .epilogue = {.callback = lstm_cell_update, .callback_ctx = &state}};
//   for each t: p.a.data = h_t; p.c = gates_t; cpu::gemm(p);
//
// Convolution, NCHW, one image and one output row block as a batch-reduce over the kh*kw taps:
//   out(OC, P) = sum_tap W_tap(OC, IC) x X_tap(IC, P), W packed once as the concatenated
//   (OC) x (taps*IC) operand (side a, .K = IC, .batch_count = taps, items = per-tap weight
//   pointers with their strides), X_tap given per tap as items with (rs, cs) = (H*W, stride_w);
//   bias per row and relu in the epilogue.
//
// Attention, inside the caller's own `#pragma omp parallel` over (batch, head, q block):
//   thread-local scratch of cpu::gemm_scratch_bytes(p) bytes, then
//   S = Q_blk x K_blk^T with .b = {.data = K_blk, .rs = 1, .cs = ldk} (or K pre-packed),
//   .alpha = softmax scale; cpu::gemm_single_thread(p, scratch, bytes).
}  // namespace bigmodel
