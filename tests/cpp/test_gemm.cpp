// The GEMM core against a double-precision triple loop: every entry point (gemm, gemm_single_thread,
// gemm_pack + packed operands), every operand kind (strided with any strides incl. transposed,
// 0 and non-unit; batch items; packed), batch-reduce, every C layout (rows, columns, general),
// alpha / beta (beta == 0 must not read C), bias per row / column, relu and the tile callback
// (each element exactly once, after its final value), with M / N / K = 0 and 1 and odd sizes.
#include <algorithm>

#include "bigmodel/gemm.h"
#include "harness.h"

namespace {

using namespace bigmodel;

int64_t pick_size() {
  const double r = bmtest::uniform(0, 1);
  if (r < 0.1) return 0;
  if (r < 0.25) return 1;
  if (r < 0.8) return bmtest::randint(2, 40);
  return bmtest::randint(41, 90);
}

// One strided or batch operand of `rows x cols` logical extent (rows = outer for A, Kt for B ...)
// laid out in its own buffer(s) with random strides. `per_item` is the reduction length of one
// item; `k_is_rows` says whether the reduction runs along rows (B) or columns (A).
template <typename T>
struct Operand {
  GemmOperandKind kind = GemmOperandKind::strided;
  int64_t rs = 0, cs = 0;
  std::vector<bmtest::Buffer<T>> bufs;
  std::vector<const void*> items;
  int64_t outer = 0, Kt = 0, K = 0;
  bool k_is_rows = false;

  // element (r, c) of the logical matrix (r, c in the operand's own orientation)
  double at(int64_t r, int64_t c) const {
    if (kind == GemmOperandKind::strided) return static_cast<double>(bufs[0][r * rs + c * cs]);
    const int64_t k = k_is_rows ? r : c;
    const int64_t t = k / K, kk = k % K;
    const int64_t rr = k_is_rows ? kk : r, cc = k_is_rows ? c : kk;
    return static_cast<double>(bufs[t][rr * rs + cc * cs]);
  }
};

// Strides for a rows x cols matrix: row-major, column-major, padded, non-unit on both sides, or
// a zero stride (broadcast).
void random_strides(int64_t rows, int64_t cols, int64_t& rs, int64_t& cs, int64_t& size) {
  const int form = static_cast<int>(bmtest::randint(0, 4));
  const int64_t pad = bmtest::randint(0, 3);
  switch (form) {
    case 0: rs = cols + pad; cs = 1; break;             // row-major
    case 1: rs = 1; cs = rows + pad; break;             // column-major (transposed)
    case 2: rs = 2 * (cols + pad); cs = 2; break;       // non-unit on both sides
    case 3: rs = 0; cs = 1; break;                      // every row the same
    default: rs = 1; cs = 0; break;                     // every column the same
  }
  size = (rows > 0 && cols > 0) ? (rows - 1) * rs + (cols - 1) * cs + 1 : 0;
}

template <typename T>
void make_operand(Operand<T>& op, int64_t outer, int64_t K, int64_t batch_count, bool side_b, bool allow_batch) {
  op.outer = outer;
  op.K = K;
  op.Kt = K * batch_count;
  op.k_is_rows = side_b;
  op.kind = allow_batch && batch_count > 0 && K > 0 && bmtest::coin(0.4) ? GemmOperandKind::batch
                                                                        : GemmOperandKind::strided;
  const int64_t items = op.kind == GemmOperandKind::batch ? batch_count : 1;
  const int64_t k_ext = op.kind == GemmOperandKind::batch ? K : op.Kt;
  const int64_t rows = side_b ? k_ext : outer, cols = side_b ? outer : k_ext;
  int64_t size;
  random_strides(rows, cols, op.rs, op.cs, size);
  op.bufs.reserve(items);
  for (int64_t t = 0; t < items; ++t) {
    op.bufs.emplace_back(size);
    op.bufs.back().fill_random();
  }
  for (auto& b : op.bufs) op.items.push_back(b.data());
}

template <typename T>
GemmOperand describe(const Operand<T>& op) {
  GemmOperand g;
  g.kind = op.kind;
  g.rs = op.rs;
  g.cs = op.cs;
  if (op.kind == GemmOperandKind::strided) g.data = op.bufs[0].data();
  else g.items = op.items.data();
  return g;
}

// Records how often each C element reached the callback and checks it saw final values.
struct CallbackLog {
  int64_t M = 0, N = 0;
  std::vector<int> count;
  std::vector<double> seen;
};

template <typename T>
void record_tile(void* ctx, void* c, int64_t rs_c, int64_t cs_c, int64_t row0, int64_t col0, int64_t rows,
                 int64_t cols) {
  auto* log = static_cast<CallbackLog*>(ctx);
  const T* ct = static_cast<const T*>(c);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t r = row0 + i, q = col0 + j;
      if (r < 0 || r >= log->M || q < 0 || q >= log->N) continue;  // counted as a miss below
      log->count[r * log->N + q] += 1;
      log->seen[r * log->N + q] = static_cast<double>(ct[i * rs_c + j * cs_c]);
    }
}

template <typename T>
void run_gemm_case() {
  const DType dt = sizeof(T) == 4 ? DType::f32 : DType::f64;
  const int64_t M = pick_size(), N = pick_size();
  const int64_t batch_count = bmtest::coin(0.3) ? bmtest::randint(0, 4) : 1;
  const int64_t K = pick_size();
  const int64_t Kt = K * batch_count;

  // Sometimes an operand is pre-packed longer in k than the GEMM (k_total = Kt + extra) and the
  // GEMM uses its k-prefix (attention's causal blocks): made as one strided matrix of Kt + extra.
  int64_t extra[2] = {0, 0};
  for (int64_t& e : extra)
    if (bmtest::coin(0.15)) e = bmtest::randint(1, 40);
  Operand<T> A, B;
  if (extra[0] > 0) make_operand(A, M, Kt + extra[0], 1, false, false);
  else make_operand(A, M, K, batch_count, false, true);
  if (extra[1] > 0) make_operand(B, N, Kt + extra[1], 1, true, false);
  else make_operand(B, N, K, batch_count, true, true);

  GemmParams p;
  p.dtype = dt;
  p.M = M;
  p.N = N;
  p.K = K;
  p.batch_count = batch_count;
  p.a = describe(A);
  p.b = describe(B);

  // pre-pack A and / or B sometimes (from whatever kind they are)
  std::vector<unsigned char> pack_a, pack_b;
  GemmPacked packed_a, packed_b;
  for (int side = 0; side < 2; ++side) {
    if (extra[side] == 0 && !bmtest::coin(0.3)) continue;
    GemmPackParams pk;
    pk.dtype = dt;
    pk.side = side == 0 ? GemmSide::a : GemmSide::b;
    pk.outer = side == 0 ? M : N;
    pk.K = extra[side] > 0 ? Kt + extra[side] : K;
    pk.batch_count = extra[side] > 0 ? 1 : batch_count;
    pk.src = side == 0 ? p.a : p.b;
    pk.num_threads = static_cast<int>(bmtest::randint(1, 2));
    auto& buf = side == 0 ? pack_a : pack_b;
    const int64_t bytes = cpu::gemm_packed_bytes(dt, pk.side, pk.outer, Kt + extra[side]);
    BM_CHECK(bytes >= 0, "gemm_packed_bytes " << bytes);
    buf.assign(static_cast<size_t>(bytes) + 1, 0xCD);
    buf[bytes] = 0x5A;  // sentinel past the packed extent
    pk.dst = buf.data();
    GemmPacked& out = side == 0 ? packed_a : packed_b;
    out = cpu::gemm_pack(pk);
    BM_CHECK(buf[bytes] == 0x5A, "gemm_pack wrote past gemm_packed_bytes");
    GemmOperand g;
    g.kind = GemmOperandKind::packed;
    g.packed = &out;
    (side == 0 ? p.a : p.b) = g;
  }

  // C: row-major, column-major or general strides, with padding between rows
  const int c_form = static_cast<int>(bmtest::randint(0, 2));
  const int64_t pad = bmtest::randint(0, 2);
  if (c_form == 0) { p.rs_c = N + pad; p.cs_c = 1; }
  else if (c_form == 1) { p.rs_c = 1; p.cs_c = M + pad; }
  else { p.rs_c = 2 * (N + pad); p.cs_c = 2; }
  const int64_t c_size = M > 0 && N > 0 ? (M - 1) * p.rs_c + (N - 1) * p.cs_c + 1 : 0;
  bmtest::Buffer<T> C(c_size);
  C.fill_random();
  p.alpha = bmtest::coin(0.7) ? 1.0 : bmtest::uniform(-2, 2);
  p.beta = bmtest::coin(0.5) ? 0.0 : (bmtest::coin() ? 1.0 : bmtest::uniform(-2, 2));
  if (p.beta == 0.0) C.fill(std::numeric_limits<T>::quiet_NaN());  // must be overwritten, never read
  std::vector<double> c_old(c_size);
  for (int64_t i = 0; i < c_size; ++i) c_old[i] = static_cast<double>(C[i]);

  const int bias_kind = static_cast<int>(bmtest::randint(0, 2));
  bmtest::Buffer<T> bias(bias_kind == 1 ? M : bias_kind == 2 ? N : 0);
  bias.fill_random();
  p.epilogue.bias_kind = static_cast<GemmBias>(bias_kind);
  p.epilogue.bias = bias_kind ? bias.data() : nullptr;
  p.epilogue.activation = bmtest::coin(0.3) ? GemmActivation::relu : GemmActivation::none;
  CallbackLog log;
  log.M = M;
  log.N = N;
  log.count.assign(M * N, 0);
  log.seen.assign(M * N, 0.0);
  const bool with_callback = bmtest::coin(0.3);
  if (with_callback) {
    p.epilogue.callback = record_tile<T>;
    p.epilogue.callback_ctx = &log;
  }
  p.c = C.data();

  const bool single = bmtest::coin(0.4);
  if (single) {
    const int64_t bytes = cpu::gemm_scratch_bytes(p);
    BM_CHECK(bytes >= 0, "gemm_scratch_bytes " << bytes);
    bmtest::Buffer<unsigned char> scratch(bytes);
    cpu::gemm_single_thread(p, scratch.data(), bytes);
    scratch.check("gemm scratch");
  } else {
    p.num_threads = static_cast<int>(bmtest::randint(1, 2));
    cpu::gemm(p);
  }
  C.check("gemm C");

  std::vector<double> want(c_size);
  for (int64_t i = 0; i < c_size; ++i) want[i] = p.beta == 0.0 ? 0.0 : c_old[i];
  std::vector<char> is_elem(c_size, 0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < Kt; ++k) acc += A.at(i, k) * B.at(k, j);
      const int64_t o = i * p.rs_c + j * p.cs_c;
      double v = static_cast<double>(static_cast<T>(p.alpha)) * acc;
      if (p.beta != 0.0) v += static_cast<double>(static_cast<T>(p.beta)) * c_old[o];
      if (bias_kind == 1) v += static_cast<double>(bias[i]);
      if (bias_kind == 2) v += static_cast<double>(bias[j]);
      if (p.epilogue.activation == GemmActivation::relu) v = v > 0 ? v : 0;
      want[o] = v;
      is_elem[o] = 1;
    }
  // elements of C's buffer that are not elements of C (padding) must be untouched
  for (int64_t o = 0; o < c_size; ++o)
    if (!is_elem[o]) want[o] = c_old[o];
  const double tol = sizeof(T) == 4 ? 3e-5 * std::sqrt(static_cast<double>(Kt) + 1) * 4 : 1e-12 * (Kt + 1);
  std::ostringstream what;
  what << "gemm M=" << M << " N=" << N << " K=" << K << " batch=" << batch_count << " k-prefix of packed a/b +"
       << extra[0] << "/+" << extra[1] << " a=" << int(p.a.kind)
       << " b=" << int(p.b.kind) << " rs_c=" << p.rs_c << " cs_c=" << p.cs_c << " alpha=" << p.alpha
       << " beta=" << p.beta << " bias=" << bias_kind << " single=" << single;
  bmtest::expect_close(C.data(), want, tol, tol, what.str());
  if (with_callback) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        BM_CHECK(log.count[i * N + j] == 1,
                 what.str() << ": callback saw C(" << i << "," << j << ") " << log.count[i * N + j] << " times");
        const double fin = static_cast<double>(C[i * p.rs_c + j * p.cs_c]);
        BM_CHECK(log.seen[i * N + j] == fin || (std::isnan(fin) && std::isnan(log.seen[i * N + j])),
                 what.str() << ": callback saw C(" << i << "," << j << ") before its final value");
      }
  }
}

template <typename T>
void gemm_random(int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    run_gemm_case<T>();
    ++bmtest::cases_run();
  }
}

void expect_invalid(GemmParams p, const char* needle) {
  try {
    cpu::gemm(p);
  } catch (const std::invalid_argument& e) {
    BM_CHECK(std::strstr(e.what(), needle) != nullptr, "message '" << e.what() << "' lacks '" << needle << "'");
    ++bmtest::cases_run();
    return;
  }
  throw bmtest::Failure(std::string("gemm accepted bad parameters (expected '") + needle + "')");
}

}  // namespace

BM_TEST(gemm_random_f32) { gemm_random<float>(bmtest::fuzz_cases(150)); }
BM_TEST(gemm_random_f64) { gemm_random<double>(bmtest::fuzz_cases(50)); }

BM_TEST(gemm_rejects_bad_parameters) {
  float a[4] = {}, b[4] = {}, c[4] = {};
  GemmParams p;
  p.M = p.N = p.K = 2;
  p.a = {GemmOperandKind::strided, a, nullptr, 2, 1, nullptr};
  p.b = {GemmOperandKind::strided, b, nullptr, 2, 1, nullptr};
  p.c = c;
  p.rs_c = 2;
  GemmParams q = p;
  q.K = -1;
  expect_invalid(q, "K must be >= 0");
  q = p;
  q.batch_count = -2;
  expect_invalid(q, "batch_count");
  q = p;
  q.a.data = nullptr;
  expect_invalid(q, "A is a null pointer");
  q = p;
  q.dtype = DType::f16;
  expect_invalid(q, "dtype");
  // a packed operand may be longer in k than the GEMM (its k-prefix is used), never shorter
  float packed_a[64 * 2 * 8] = {};
  GemmPackParams pk;
  pk.side = GemmSide::a;
  pk.outer = 2;
  pk.K = 1;
  pk.src = p.a;
  pk.dst = packed_a;
  const GemmPacked short_a = cpu::gemm_pack(pk);
  q = p;
  q.a.kind = GemmOperandKind::packed;
  q.a.packed = &short_a;
  expect_invalid(q, "and Kt (at least) 2");
}

// The k-prefix of a packed operand, deterministic: S = A[:, :k] B[:k, :] for every k <= k_total
// with A packed once for k_total (attention uses the first `keys` of a packed key block).
BM_TEST(gemm_packed_k_prefix) {
  const int64_t M = 37, N = 45, Kp = 70;
  bmtest::Buffer<float> a(M * Kp), b(Kp * N), c(M * N);
  a.fill_random();
  b.fill_random();
  GemmPackParams pk;
  pk.side = GemmSide::a;
  pk.outer = M;
  pk.K = Kp;
  pk.src = {GemmOperandKind::strided, a.data(), nullptr, Kp, 1, nullptr};
  std::vector<float> buf(static_cast<size_t>(cpu::gemm_packed_bytes(DType::f32, GemmSide::a, M, Kp) / 4));
  pk.dst = buf.data();
  const GemmPacked pa = cpu::gemm_pack(pk);
  for (int64_t k : {int64_t(0), int64_t(1), int64_t(13), int64_t(69), Kp}) {
    GemmParams p;
    p.M = M;
    p.N = N;
    p.K = k;
    p.a.kind = GemmOperandKind::packed;
    p.a.packed = &pa;
    p.b = {GemmOperandKind::strided, b.data(), nullptr, N, 1, nullptr};
    p.c = c.data();
    p.rs_c = N;
    c.fill(std::numeric_limits<float>::quiet_NaN());
    cpu::gemm(p);
    std::vector<double> want(M * N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t t = 0; t < k; ++t) acc += static_cast<double>(a[i * Kp + t]) * static_cast<double>(b[t * N + j]);
        want[i * N + j] = acc;
      }
    bmtest::expect_close(c.data(), want, 1e-4, 1e-4, "k-prefix " + std::to_string(k) + " of a packed A");
    ++bmtest::cases_run();
  }
}
