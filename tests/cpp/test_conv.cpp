// conv2d forward, backward-input and backward-weight (+ bias) against the definition in
// kernels/include/bigmodel/conv.h evaluated in double, on random shapes: NCHW and NHWC, groups
// (incl. depthwise), 1x1 (the GEMM path), stride, dilation, asymmetric padding, N = 0.
#include <algorithm>

#include "bigmodel/conv.h"
#include "harness.h"

namespace {

using namespace bigmodel;

int64_t act_offset(const Conv2dParams& p, int64_t n, int64_t c, int64_t h, int64_t w, int64_t C, int64_t H, int64_t W) {
  return p.layout == Layout::nhwc ? ((n * H + h) * W + w) * C + c : ((n * C + c) * H + h) * W + w;
}

// Random valid parameters. Returns false when the output would be empty.
bool random_conv(Conv2dParams& p) {
  const int kind = static_cast<int>(bmtest::randint(0, 3));  // 0 general, 1 depthwise, 2 pointwise, 3 grouped
  p.N = bmtest::coin(0.1) ? 0 : bmtest::randint(1, 2);
  p.groups = 1;
  int64_t icg = bmtest::randint(1, 9), ocg = bmtest::randint(1, 9);
  if (kind == 1) {
    p.groups = bmtest::randint(2, 20);
    icg = ocg = 1;
  } else if (kind == 3) {
    p.groups = bmtest::randint(2, 4);
    icg = bmtest::randint(1, 4);
    ocg = bmtest::randint(1, 4);
  }
  p.IC = icg * p.groups;
  p.OC = ocg * p.groups;
  p.H = bmtest::randint(1, 14);
  p.W = bmtest::randint(1, 19);
  if (kind == 2) {
    p.KH = p.KW = 1;
    p.sH = p.sW = 1;
    p.dH = p.dW = 1;
    p.pH = p.pW = 0;
  } else {
    p.KH = bmtest::randint(1, 5);
    p.KW = bmtest::randint(1, 5);
    p.sH = bmtest::randint(1, 3);
    p.sW = bmtest::randint(1, 3);
    p.dH = bmtest::coin(0.7) ? 1 : bmtest::randint(2, 3);
    p.dW = bmtest::coin(0.7) ? 1 : bmtest::randint(2, 3);
    p.pH = bmtest::randint(0, 2);
    p.pW = bmtest::randint(0, 2);
  }
  // bottom / right padding: usually symmetric, sometimes one more (padding='same' with even kernels)
  const int64_t endH = p.pH + (bmtest::coin(0.2) ? 1 : 0), endW = p.pW + (bmtest::coin(0.2) ? 1 : 0);
  p.OH = conv_output_size(p.H, p.KH, p.sH, p.pH, kind == 2 ? 0 : endH, p.dH);
  p.OW = conv_output_size(p.W, p.KW, p.sW, p.pW, kind == 2 ? 0 : endW, p.dW);
  p.layout = bmtest::coin() ? Layout::nhwc : Layout::nchw;
  p.num_threads = static_cast<int>(bmtest::randint(1, 2));
  return p.OH >= 1 && p.OW >= 1;
}

template <typename T>
void run_conv_case(Conv2dParams p) {
  p.dtype = sizeof(T) == 4 ? DType::f32 : DType::f64;
  const int64_t icg = p.IC / p.groups, ocg = p.OC / p.groups;
  const int64_t in_n = p.N * p.IC * p.H * p.W, out_n = p.N * p.OC * p.OH * p.OW;
  const int64_t w_n = p.OC * icg * p.KH * p.KW;
  bmtest::Buffer<T> x(in_n), w(w_n), bias(p.OC), y(out_n), gy(out_n), gx(in_n), gw(w_n), gb(p.OC);
  x.fill_random();
  w.fill_random();
  bias.fill_random();
  gy.fill_random();
  y.fill(T(-777));
  gx.fill(T(-777));
  gw.fill(T(-777));
  gb.fill(T(-777));
  const bool has_bias = bmtest::coin();
  p.input = x.data();
  p.weight = w.data();
  p.bias = has_bias ? bias.data() : nullptr;
  p.output = y.data();
  p.grad_output = gy.data();
  p.grad_input = gx.data();
  p.grad_weight = gw.data();
  p.grad_bias = bmtest::coin(0.7) ? gb.data() : nullptr;

  std::vector<double> want_y(out_n), want_gx(in_n, 0.0), want_gw(w_n, 0.0), want_gb(p.OC, 0.0);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t oc = 0; oc < p.OC; ++oc) {
      const int64_t g = oc / ocg;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          const int64_t o = act_offset(p, n, oc, oh, ow, p.OC, p.OH, p.OW);
          const double go = static_cast<double>(gy[o]);
          double acc = has_bias ? static_cast<double>(bias[oc]) : 0.0;
          want_gb[oc] += go;
          for (int64_t ic = 0; ic < icg; ++ic)
            for (int64_t kh = 0; kh < p.KH; ++kh) {
              const int64_t ih = oh * p.sH - p.pH + kh * p.dH;
              if (ih < 0 || ih >= p.H) continue;
              for (int64_t kw = 0; kw < p.KW; ++kw) {
                const int64_t iw = ow * p.sW - p.pW + kw * p.dW;
                if (iw < 0 || iw >= p.W) continue;
                const int64_t xi = act_offset(p, n, g * icg + ic, ih, iw, p.IC, p.H, p.W);
                const int64_t wi = ((oc * icg + ic) * p.KH + kh) * p.KW + kw;
                acc += static_cast<double>(x[xi]) * static_cast<double>(w[wi]);
                want_gx[xi] += go * static_cast<double>(w[wi]);
                want_gw[wi] += go * static_cast<double>(x[xi]);
              }
            }
          want_y[o] = acc;
        }
    }
  std::ostringstream what;
  what << "conv N=" << p.N << " IC=" << p.IC << " OC=" << p.OC << " H=" << p.H << " W=" << p.W << " K=" << p.KH << "x"
       << p.KW << " s=" << p.sH << "," << p.sW << " p=" << p.pH << "," << p.pW << " d=" << p.dH << "," << p.dW
       << " OH=" << p.OH << " OW=" << p.OW << " groups=" << p.groups << " nhwc=" << (p.layout == Layout::nhwc)
       << " threads=" << p.num_threads;
  const double red = static_cast<double>(icg * p.KH * p.KW);
  const double tol_f = sizeof(T) == 4 ? 2e-5 * std::sqrt(red + 1) * 4 : 1e-12 * (red + 1);
  cpu::conv2d_forward(p);
  y.check("conv output");
  x.check("conv input");
  bmtest::expect_close(y.data(), want_y, tol_f, tol_f, what.str() + " forward");

  cpu::conv2d_backward_input(p);
  gx.check("conv grad_input");
  const double red_i = static_cast<double>(ocg * p.KH * p.KW);
  const double tol_i = sizeof(T) == 4 ? 2e-5 * std::sqrt(red_i + 1) * 4 : 1e-12 * (red_i + 1);
  bmtest::expect_close(gx.data(), want_gx, tol_i, tol_i, what.str() + " backward_input");

  cpu::conv2d_backward_weight(p);
  gw.check("conv grad_weight");
  gb.check("conv grad_bias");
  const double red_w = static_cast<double>(p.N * p.OH * p.OW);
  const double tol_w = sizeof(T) == 4 ? 2e-5 * std::sqrt(red_w + 1) * 4 : 1e-12 * (red_w + 1);
  bmtest::expect_close(gw.data(), want_gw, tol_w, tol_w, what.str() + " backward_weight");
  if (p.grad_bias) bmtest::expect_close(gb.data(), want_gb, tol_w, tol_w, what.str() + " backward_bias");
}

template <typename T>
void conv_random(int64_t count) {
  for (int64_t i = 0; i < count;) {
    Conv2dParams p;
    if (!random_conv(p)) continue;
    run_conv_case<T>(p);
    ++bmtest::cases_run();
    ++i;
  }
}

}  // namespace

BM_TEST(conv_random_f32) { conv_random<float>(bmtest::fuzz_cases(120)); }
BM_TEST(conv_random_f64) { conv_random<double>(bmtest::fuzz_cases(40)); }

BM_TEST(conv_output_size_rule) {
  struct Row { int64_t in, k, s, pb, pe, d, out; };
  const Row rows[] = {{5, 3, 1, 1, 1, 1, 5}, {5, 3, 2, 0, 0, 1, 2}, {4, 2, 1, 0, 1, 1, 4},
                      {3, 5, 1, 0, 0, 1, 0}, {7, 3, 1, 0, 0, 3, 1}, {1, 1, 1, 0, 0, 1, 1}};
  for (const Row& r : rows) {
    const int64_t got = conv_output_size(r.in, r.k, r.s, r.pb, r.pe, r.d);
    BM_CHECK((got >= 1 ? got : 0) == r.out, "in=" << r.in << " k=" << r.k << ": " << got << " vs " << r.out);
    ++bmtest::cases_run();
  }
}
