// kernels/cpu/util.h: the integer helpers, the aligned buffer, the float/double switch and the
// thread-order reduction of partial sums.
#include "cpu/util.h"

#include <utility>

#include "harness.h"

namespace {

using namespace bigmodel::cpu;
using bigmodel::DType;

BM_TEST(util_integer_helpers) {
  BM_CHECK(min64(3, -2) == -2 && max64(3, -2) == 3, "");
  BM_CHECK(ceil_div(0, 4) == 0 && ceil_div(1, 4) == 1 && ceil_div(8, 4) == 2 && ceil_div(9, 4) == 3, "");
  BM_CHECK(round_up(0, 16) == 0 && round_up(1, 16) == 16 && round_up(32, 16) == 32 && round_up(33, 16) == 48, "");
  BM_CHECK(align64(int64_t(0)) == 0 && align64(int64_t(1)) == 64 && align64(int64_t(64)) == 64 &&
               align64(int64_t(65)) == 128,
           "");
  BM_CHECK(floor_div(-1, 3) == -1 && floor_div(-3, 3) == -1 && floor_div(-4, 3) == -2 && floor_div(5, 3) == 1, "");
  BM_CHECK(pos_mod(-1, 3) == 2 && pos_mod(-3, 3) == 0 && pos_mod(4, 3) == 1, "");
  char raw[256];
  for (int i = 0; i < 64; ++i) {
    char* p = align64(raw + i);
    BM_CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0 && p >= raw + i && p < raw + i + 64, "offset " << i);
  }
  // split_range: contiguous, covers [0, total), sizes differ by at most one
  for (int64_t total : {0, 1, 5, 7, 64}) {
    for (int parts : {1, 2, 3, 8}) {
      int64_t next = 0, lo = total, hi = 0;
      for (int k = 0; k < parts; ++k) {
        int64_t b, e;
        split_range(total, k, parts, b, e);
        BM_CHECK(b == next && e >= b, "total " << total << " parts " << parts);
        lo = min64(lo, e - b);
        hi = max64(hi, e - b);
        next = e;
      }
      BM_CHECK(next == total && hi - lo <= 1, "total " << total << " parts " << parts);
      ++bmtest::cases_run();
    }
  }
}

BM_TEST(util_aligned_buffer) {
  for (int64_t bytes : {0, 1, 63, 64, 1000, 1 << 20}) {
    AlignedBuffer b(bytes);
    BM_CHECK(b.data() != nullptr && reinterpret_cast<uintptr_t>(b.data()) % 64 == 0, bytes << " bytes");
    BM_CHECK(b.bytes() == bytes, "");
    for (int64_t i = 0; i < bytes; ++i) b.data()[i] = static_cast<char>(i);  // ASan: all of it is ours
    ++bmtest::cases_run();
  }
  AlignedBuffer f = AlignedBuffer::of<float>(48);
  BM_CHECK(f.bytes() == 48 * 4, "");
  BM_CHECK(f.slice<float>(2, 16) == f.as<float>() + 32 && reinterpret_cast<uintptr_t>(f.slice<float>(2, 16)) % 64 == 0,
           "");
  char* before = f.data();
  AlignedBuffer g(std::move(f));  // moves ownership: exactly one delete (ASan checks)
  BM_CHECK(g.data() == before && f.data() == nullptr && f.bytes() == 0, "");
  g.reset(10);
  BM_CHECK(g.bytes() == 10 && reinterpret_cast<uintptr_t>(g.data()) % 64 == 0, "");
  AlignedBuffer empty;
  BM_CHECK(empty.data() == nullptr && empty.bytes() == 0, "");
  empty = std::move(g);
  BM_CHECK(empty.bytes() == 10 && g.data() == nullptr, "");
}

template <typename T>
int size_of_t() {
  return static_cast<int>(sizeof(T));
}

BM_TEST(util_float_switch) {
  BM_CHECK(BIGMODEL_FLOAT_SWITCH(DType::f64, T, [&] { return size_of_t<T>(); }) == 8, "");
  BM_CHECK(BIGMODEL_FLOAT_SWITCH(DType::f32, T, [&] { return size_of_t<T>(); }) == 4, "");
  BM_CHECK(dtype_of<double>() == DType::f64 && dtype_of<float>() == DType::f32, "");
  int seen = 0;
  BIGMODEL_FLOAT_SWITCH(DType::f64, T, [&] { seen = size_of_t<T>(); });
  BM_CHECK(seen == 8, "");
}

BM_TEST(util_thread_order_reduction) {
  // Parts chosen so that the order of the float sum shows: in thread order
  // ((1e8 + 1) + (-1e8)) + 1 = 1 in float (the first 1 is absorbed), in reverse order 0.
  const int nparts = 4;
  const int64_t stride = 16, n = 3;
  float parts[nparts * stride] = {};
  const float col0[nparts] = {1e8f, 1.f, -1e8f, 1.f};
  for (int k = 0; k < nparts; ++k) {
    parts[k * stride + 0] = col0[k];
    parts[k * stride + 1] = static_cast<float>(k + 1);  // 1 + 2 + 3 + 4
    parts[k * stride + 2] = 0.5f;
  }
  BM_CHECK(sum_parts(parts, nparts, stride) == 1.f, "thread order: " << sum_parts(parts, nparts, stride));
  float out[n];
  reduce_parts(out, parts, nparts, stride, n);
  BM_CHECK(out[0] == 1.f && out[1] == 10.f && out[2] == 2.f, out[0] << " " << out[1] << " " << out[2]);
  BM_CHECK(sum_parts(parts, 0, stride) == 0.f, "no parts sum to zero");
}

BM_TEST(util_gemm_operand_builders) {
  const float data[4] = {1, 2, 3, 4};
  const bigmodel::GemmOperand s = strided(data, 2, 1);
  BM_CHECK(s.kind == bigmodel::GemmOperandKind::strided && s.data == data && s.rs == 2 && s.cs == 1, "");
  const void* items[2] = {data, data + 2};
  const bigmodel::GemmOperand b = batched(items, 1, 2);
  BM_CHECK(b.kind == bigmodel::GemmOperandKind::batch && b.items == items && b.rs == 1 && b.cs == 2, "");
  bigmodel::GemmPacked pk;
  BM_CHECK(packed(&pk).kind == bigmodel::GemmOperandKind::packed && packed(&pk).packed == &pk, "");
  // B side: a K x outer view, so (so, sk) become (cs, rs)
  const bigmodel::GemmPackParams pb = pack_params(DType::f32, bigmodel::GemmSide::b, 3, 5, data, 1, 7, nullptr);
  BM_CHECK(pb.src.rs == 7 && pb.src.cs == 1 && pb.outer == 3 && pb.K == 5 && pb.num_threads == 1, "");
  const bigmodel::GemmPackParams pa = pack_params(DType::f64, bigmodel::GemmSide::a, 3, 5, data, 1, 7, nullptr, 2);
  BM_CHECK(pa.src.rs == 1 && pa.src.cs == 7 && pa.dtype == DType::f64 && pa.num_threads == 2, "");
  float c[4];
  const bigmodel::GemmParams g = gemm_params<float>(2, 2, 2, s, s, c, 2, 1.f, 0.f);
  BM_CHECK(g.dtype == DType::f32 && g.M == 2 && g.c == c && g.rs_c == 2 && g.cs_c == 1 && g.beta == 0.0, "");
}

}  // namespace
