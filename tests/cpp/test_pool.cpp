// Pooling kernels against a direct double-precision transcription of torch's definitions, on
// random shapes and settings, both layouts, float32 and float64, forward (with and without
// indices) and backward.
#include "bigmodel/pool.h"
#include "harness.h"

namespace {

using bigmodel::DType;
using bigmodel::Layout;
using bigmodel::Pool2dParams;

int64_t offset(const Pool2dParams& p, int64_t n, int64_t c, int64_t h, int64_t w, int64_t H, int64_t W) {
  return p.layout == Layout::nhwc ? ((n * H + h) * W + w) * p.C + c : ((n * p.C + c) * H + h) * W + w;
}

// One max window, literally as torch's CPU kernel: returns value, writes the plane index.
template <typename T>
double ref_max_window(const Pool2dParams& p, const T* x, int64_t n, int64_t c, int64_t oh, int64_t ow, int64_t& index,
                      bool& empty) {
  int64_t h0 = oh * p.sH - p.pH, w0 = ow * p.sW - p.pW;
  const int64_t h1 = std::min(h0 + (p.kH - 1) * p.dH + 1, p.H), w1 = std::min(w0 + (p.kW - 1) * p.dW + 1, p.W);
  while (h0 < 0) h0 += p.dH;
  while (w0 < 0) w0 += p.dW;
  index = h0 * p.W + w0;
  double best = -std::numeric_limits<double>::infinity();
  empty = true;
  for (int64_t h = h0; h < h1; h += p.dH)
    for (int64_t w = w0; w < w1; w += p.dW) {
      empty = false;
      const double v = static_cast<double>(x[offset(p, n, c, h, w, p.H, p.W)]);
      if (v > best || std::isnan(v)) {
        best = v;
        index = h * p.W + w;
      }
    }
  return best;
}

template <typename T>
void run_max_case(Pool2dParams p, bool with_indices) {
  const int64_t in_n = p.N * p.C * p.H * p.W, out_n = p.N * p.C * p.OH * p.OW;
  bmtest::Buffer<T> x(in_n), y(out_n), gy(out_n), gx(in_n);
  bmtest::Buffer<int64_t> idx(out_n);
  x.fill_random(-2, 2);
  // a few exact ties, NaNs and infinities
  for (int64_t i = 0; i < in_n; ++i) {
    const double r = bmtest::uniform(0, 1);
    if (r < 0.05) x[i] = T(0);
    else if (r < 0.06) x[i] = std::numeric_limits<T>::quiet_NaN();
    else if (r < 0.07) x[i] = -std::numeric_limits<T>::infinity();
  }
  gy.fill_random();
  y.fill(T(-777));
  gx.fill(T(-777));
  p.input = x.data();
  p.output = y.data();
  p.indices = with_indices ? idx.data() : nullptr;
  bigmodel::cpu::max_pool2d_forward(p);
  std::vector<double> want(out_n), want_gx(in_n, 0.0);
  std::vector<int64_t> want_idx(out_n);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          int64_t index;
          bool empty;
          const int64_t o = offset(p, n, c, oh, ow, p.OH, p.OW);
          want[o] = ref_max_window(p, x.data(), n, c, oh, ow, index, empty);
          want_idx[o] = index;
          if (!empty) want_gx[offset(p, n, c, index / p.W, index % p.W, p.H, p.W)] += static_cast<double>(gy[o]);
        }
  x.check("max input");
  y.check("max output");
  bmtest::expect_close(y.data(), want, 0, 0, "max_pool2d_forward");
  if (with_indices) {
    idx.check("max indices");
    for (int64_t i = 0; i < out_n; ++i) BM_CHECK(idx[i] == want_idx[i], "index " << i << ": " << idx[i] << " vs " << want_idx[i]);
  }
  p.grad_output = gy.data();
  p.grad_input = gx.data();
  bigmodel::cpu::max_pool2d_backward(p);
  gx.check("max grad_input");
  bmtest::expect_close(gx.data(), want_gx, bmtest::tolerance<T>(), bmtest::tolerance<T>(), "max_pool2d_backward");
}

template <typename T>
void run_avg_case(Pool2dParams p) {
  const int64_t in_n = p.N * p.C * p.H * p.W, out_n = p.N * p.C * p.OH * p.OW;
  bmtest::Buffer<T> x(in_n), y(out_n), gy(out_n), gx(in_n);
  x.fill_random();
  gy.fill_random();
  y.fill(T(-777));
  gx.fill(T(-777));
  p.input = x.data();
  p.output = y.data();
  bigmodel::cpu::avg_pool2d_forward(p);
  std::vector<double> want(out_n), want_gx(in_n, 0.0);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          int64_t h0 = oh * p.sH - p.pH, w0 = ow * p.sW - p.pW;
          int64_t h1 = std::min(h0 + p.kH, p.H + p.pH), w1 = std::min(w0 + p.kW, p.W + p.pW);
          const int64_t pool = (h1 - h0) * (w1 - w0);
          h0 = std::max<int64_t>(h0, 0);
          w0 = std::max<int64_t>(w0, 0);
          h1 = std::min(h1, p.H);
          w1 = std::min(w1, p.W);
          const int64_t o = offset(p, n, c, oh, ow, p.OH, p.OW);
          if (h0 >= h1 || w0 >= w1) {
            want[o] = 0;
            continue;
          }
          const double div = p.divisor_override ? p.divisor_override
                             : p.count_include_pad ? pool : (h1 - h0) * (w1 - w0);
          double sum = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) sum += static_cast<double>(x[offset(p, n, c, h, w, p.H, p.W)]);
          want[o] = sum / div;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) want_gx[offset(p, n, c, h, w, p.H, p.W)] += gy[o] / div;
        }
  y.check("avg output");
  bmtest::expect_close(y.data(), want, bmtest::tolerance<T>(), bmtest::tolerance<T>(), "avg_pool2d_forward");
  p.grad_output = gy.data();
  p.grad_input = gx.data();
  bigmodel::cpu::avg_pool2d_backward(p);
  gx.check("avg grad_input");
  bmtest::expect_close(gx.data(), want_gx, bmtest::tolerance<T>(), bmtest::tolerance<T>(), "avg_pool2d_backward");
}

// Random valid settings; `max` allows dilation.
bool random_params(Pool2dParams& p, bool max) {
  p.N = bmtest::randint(0, 3);
  p.C = bmtest::coin(0.3) ? bmtest::randint(1, 70) : bmtest::randint(1, 5);
  p.H = bmtest::randint(1, 20);
  p.W = bmtest::randint(1, 45);
  p.kH = bmtest::randint(1, 5);
  p.kW = bmtest::randint(1, 5);
  p.sH = bmtest::randint(1, 3);
  p.sW = bmtest::randint(1, 3);
  p.dH = max ? bmtest::randint(1, 3) : 1;
  p.dW = max ? bmtest::randint(1, 3) : 1;
  // beyond torch's padding rule on purpose: the kernels must also handle windows that lie
  // wholly in the padding (the binding rejects them, the kernels must not misbehave)
  p.pH = bmtest::randint(0, ((p.kH - 1) * p.dH + 1) / 2);
  p.pW = bmtest::randint(0, ((p.kW - 1) * p.dW + 1) / 2);
  const bool ceil = bmtest::coin();
  p.OH = bigmodel::pool_output_size(p.H, p.kH, p.sH, p.pH, p.dH, ceil);
  p.OW = bigmodel::pool_output_size(p.W, p.kW, p.sW, p.pW, p.dW, ceil);
  p.layout = bmtest::coin() ? Layout::nhwc : Layout::nchw;
  p.num_threads = static_cast<int>(bmtest::randint(1, 3));
  p.count_include_pad = bmtest::coin();
  p.divisor_override = bmtest::coin(0.2) ? bmtest::randint(1, 9) : 0;
  return p.OH >= 1 && p.OW >= 1;
}

template <typename T>
void random_max_cases(int64_t count) {
  for (int64_t i = 0; i < count;) {
    Pool2dParams p;
    if (!random_params(p, true)) continue;
    p.dtype = sizeof(T) == 4 ? DType::f32 : DType::f64;
    run_max_case<T>(p, bmtest::coin());
    ++bmtest::cases_run();
    ++i;
  }
}

template <typename T>
void random_avg_cases(int64_t count) {
  for (int64_t i = 0; i < count;) {
    Pool2dParams p;
    if (!random_params(p, false)) continue;
    p.dtype = sizeof(T) == 4 ? DType::f32 : DType::f64;
    run_avg_case<T>(p);
    ++bmtest::cases_run();
    ++i;
  }
}

}  // namespace

BM_TEST(pool_max_random_f32) { random_max_cases<float>(bmtest::fuzz_cases(300)); }
BM_TEST(pool_max_random_f64) { random_max_cases<double>(bmtest::fuzz_cases(100)); }
BM_TEST(pool_avg_random_f32) { random_avg_cases<float>(bmtest::fuzz_cases(300)); }
BM_TEST(pool_avg_random_f64) { random_avg_cases<double>(bmtest::fuzz_cases(100)); }

BM_TEST(pool_output_size_matches_torch_rule) {
  // (in, k, s, p, d, ceil) -> torch's output length
  struct Row { int64_t in, k, s, p, d; bool ceil; int64_t out; };
  const Row rows[] = {{56, 2, 2, 0, 1, false, 28}, {112, 3, 2, 1, 1, false, 56}, {5, 2, 2, 0, 1, true, 3},
                      {6, 3, 2, 1, 1, true, 4},    {1, 2, 1, 1, 2, false, 1},   {8, 9, 1, 0, 1, false, 0},
                      {7, 3, 3, 1, 1, true, 3}};
  for (const Row& r : rows) {
    const int64_t got = bigmodel::pool_output_size(r.in, r.k, r.s, r.p, r.d, r.ceil);
    BM_CHECK(got == r.out, "in=" << r.in << " k=" << r.k << " s=" << r.s << ": " << got << " vs " << r.out);
    ++bmtest::cases_run();
  }
}
