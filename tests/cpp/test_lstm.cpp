// The LSTM layer kernels (forward, backward) against a double-precision transcription of the
// math in kernels/include/bigmodel/lstm.h: random T / B / I / H (incl. T = 0, B = 0, I = 0, T = 1
// as the cell), bias or not, reverse, variable lengths, null incoming gradients.
#include <algorithm>

#include "bigmodel/lstm.h"
#include "harness.h"

namespace {

using namespace bigmodel;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

template <typename T>
void run_lstm_case() {
  LstmParams p;
  p.dtype = p.work_dtype = sizeof(T) == 4 ? DType::f32 : DType::f64;
  p.T = bmtest::coin(0.25) ? 1 : bmtest::randint(0, 7);  // T = 1 is what lstm_cell runs
  // B = 32 / 64: rows that fill whole register tiles, where inference transposes its product
  p.B = bmtest::coin(0.1) ? 0 : (bmtest::coin(0.15) ? 32 * bmtest::randint(1, 2) : bmtest::randint(1, 6));
  p.I = bmtest::coin(0.1) ? 0 : bmtest::randint(1, 24);
  p.H = bmtest::coin(0.3) ? bmtest::randint(1, 4) : bmtest::randint(5, 40);
  p.has_bias = bmtest::coin();
  p.reverse = bmtest::coin(0.3);
  p.num_threads = static_cast<int>(bmtest::randint(1, 2));
  const int64_t T_ = p.T, B = p.B, I = p.I, H = p.H, G = 4 * H;
  std::vector<int64_t> lengths;
  if (!p.reverse && bmtest::coin(0.3)) {
    for (int64_t b = 0; b < B; ++b) lengths.push_back(bmtest::randint(0, T_));
    std::sort(lengths.begin(), lengths.end(), std::greater<int64_t>());
    p.lengths = lengths.data();
  }
  bmtest::Buffer<T> x(T_ * B * I), h0(B * H), c0(B * H), wih(G * I), whh(G * H), bih(G), bhh(G);
  bmtest::Buffer<T> out(T_ * B * H), hn(B * H), cn(B * H), gates(T_ * B * G), cells(T_ * B * H);
  x.fill_random();
  h0.fill_random();
  c0.fill_random();
  wih.fill_random(-0.5, 0.5);
  whh.fill_random(-0.5, 0.5);
  bih.fill_random();
  bhh.fill_random();
  out.fill(T(-777));
  p.input = x.data();
  p.h0 = h0.data();
  p.c0 = c0.data();
  p.w_ih = wih.data();
  p.w_hh = whh.data();
  p.b_ih = p.has_bias ? bih.data() : nullptr;
  p.b_hh = p.has_bias ? bhh.data() : nullptr;
  p.output = out.data();
  p.h_n = hn.data();
  p.c_n = cn.data();
  p.gates = gates.data();
  p.cells = cells.data();

  // ---- reference forward (keeps i, f, g, o, c, h_prev, c_prev per step for the backward)
  std::vector<double> h(B * H), c(B * H), want_out(T_ * B * H, 0.0);
  std::vector<double> gi(T_ * B * G), cst(T_ * B * H), hprev(T_ * B * H), cprev(T_ * B * H);
  for (int64_t i = 0; i < B * H; ++i) {
    h[i] = static_cast<double>(h0[i]);
    c[i] = static_cast<double>(c0[i]);
  }
  auto active = [&](int64_t t, int64_t b) { return lengths.empty() || t < lengths[b]; };
  for (int64_t s = 0; s < T_; ++s) {
    const int64_t t = p.reverse ? T_ - 1 - s : s;
    for (int64_t b = 0; b < B; ++b) {
      if (!active(t, b)) continue;
      double* gt = &gi[(t * B + b) * G];
      for (int64_t j = 0; j < G; ++j) {
        double a = p.has_bias ? static_cast<double>(bih[j]) + static_cast<double>(bhh[j]) : 0.0;
        for (int64_t k = 0; k < I; ++k) a += static_cast<double>(x[(t * B + b) * I + k]) * static_cast<double>(wih[j * I + k]);
        for (int64_t k = 0; k < H; ++k) a += h[b * H + k] * static_cast<double>(whh[j * H + k]);
        gt[j] = a;
      }
      for (int64_t u = 0; u < H; ++u) {
        gt[u] = sigmoid(gt[u]);
        gt[H + u] = sigmoid(gt[H + u]);
        gt[2 * H + u] = std::tanh(gt[2 * H + u]);
        gt[3 * H + u] = sigmoid(gt[3 * H + u]);
      }
    }
    for (int64_t b = 0; b < B; ++b) {
      if (!active(t, b)) continue;
      const double* gt = &gi[(t * B + b) * G];
      for (int64_t u = 0; u < H; ++u) {
        const int64_t o = (t * B + b) * H + u;
        hprev[o] = h[b * H + u];
        cprev[o] = c[b * H + u];
        const double cn_ = gt[H + u] * c[b * H + u] + gt[u] * gt[2 * H + u];
        cst[o] = cn_;
        c[b * H + u] = cn_;
        h[b * H + u] = gt[3 * H + u] * std::tanh(cn_);
        want_out[o] = h[b * H + u];
      }
    }
  }
  std::ostringstream what;
  what << "lstm T=" << T_ << " B=" << B << " I=" << I << " H=" << H << " bias=" << p.has_bias
       << " reverse=" << p.reverse << " lengths=" << !lengths.empty() << " threads=" << p.num_threads;
  const double tol = sizeof(T) == 4 ? 1e-4 : 1e-11;
  // output / h_n / c_n of one forward form: nothing written out of bounds, values as the reference.
  const auto expect_states = [&](const bmtest::Buffer<T>& o, const bmtest::Buffer<T>& hh, const bmtest::Buffer<T>& cc,
                                 const std::string& form) {
    o.check(("lstm" + form + " output").c_str());
    hh.check(("lstm" + form + " h_n").c_str());
    cc.check(("lstm" + form + " c_n").c_str());
    bmtest::expect_close(o.data(), want_out, tol, tol, what.str() + form + " output");
    bmtest::expect_close(hh.data(), h, tol, tol, what.str() + form + " h_n");
    bmtest::expect_close(cc.data(), c, tol, tol, what.str() + form + " c_n");
  };
  cpu::lstm_forward(p);
  gates.check("lstm gates");
  cells.check("lstm cells");
  expect_states(out, hn, cn, "");
  {  // inference: no gates / cells saved (each step one GEMM over [x_t | h]); same results
    bmtest::Buffer<T> out2(T_ * B * H), hn2(B * H), cn2(B * H);
    out2.fill(T(-777));
    LstmParams q = p;
    q.output = out2.data();
    q.h_n = hn2.data();
    q.c_n = cn2.data();
    q.gates = q.cells = nullptr;
    cpu::lstm_forward(q);
    expect_states(out2, hn2, cn2, " inference");
  }

  // ---- backward, on the forward's saved gates / cells
  bmtest::Buffer<T> gout(T_ * B * H), ghn(B * H), gcn(B * H), ggates(T_ * B * G), gx(T_ * B * I), gh0(B * H), gc0(B * H),
      gwih(G * I), gwhh(G * H), gbias(G);
  gout.fill_random();
  ghn.fill_random();
  gcn.fill_random();
  gx.fill(T(-777));
  gwih.fill(T(-777));
  const bool has_gout = bmtest::coin(0.8), has_ghn = bmtest::coin(0.6), has_gcn = bmtest::coin(0.5);
  p.grad_output = has_gout ? gout.data() : nullptr;
  p.grad_h_n = has_ghn ? ghn.data() : nullptr;
  p.grad_c_n = has_gcn ? gcn.data() : nullptr;
  p.grad_gates = ggates.data();
  p.grad_input = gx.data();
  p.grad_h0 = gh0.data();
  p.grad_c0 = gc0.data();
  p.grad_w_ih = gwih.data();
  p.grad_w_hh = gwhh.data();
  p.grad_bias = gbias.data();

  std::vector<double> dh(B * H), dc(B * H), want_gx(T_ * B * I, 0.0), want_gwih(G * I, 0.0), want_gwhh(G * H, 0.0),
      want_gb(G, 0.0), dG(G);
  for (int64_t i = 0; i < B * H; ++i) {
    dh[i] = has_ghn ? static_cast<double>(ghn[i]) : 0.0;
    dc[i] = has_gcn ? static_cast<double>(gcn[i]) : 0.0;
  }
  for (int64_t s = T_ - 1; s >= 0; --s) {
    const int64_t t = p.reverse ? T_ - 1 - s : s;
    std::vector<double> dh_next(dh);
    for (int64_t b = 0; b < B; ++b) {
      if (!active(t, b)) continue;
      const double* gt = &gi[(t * B + b) * G];
      for (int64_t u = 0; u < H; ++u) {
        const int64_t o = (t * B + b) * H + u;
        const double dhu = dh[b * H + u] + (has_gout ? static_cast<double>(gout[o]) : 0.0);
        const double tc = std::tanh(cst[o]);
        const double i_ = gt[u], f_ = gt[H + u], g_ = gt[2 * H + u], o_ = gt[3 * H + u];
        const double dcu = dc[b * H + u] + dhu * o_ * (1 - tc * tc);
        dG[u] = dcu * g_ * i_ * (1 - i_);
        dG[H + u] = dcu * cprev[o] * f_ * (1 - f_);
        dG[2 * H + u] = dcu * i_ * (1 - g_ * g_);
        dG[3 * H + u] = dhu * tc * o_ * (1 - o_);
        dc[b * H + u] = dcu * f_;
      }
      for (int64_t k = 0; k < H; ++k) {
        double a = 0;
        for (int64_t j = 0; j < G; ++j) a += dG[j] * static_cast<double>(whh[j * H + k]);
        dh_next[b * H + k] = a;
      }
      for (int64_t k = 0; k < I; ++k) {
        double a = 0;
        for (int64_t j = 0; j < G; ++j) a += dG[j] * static_cast<double>(wih[j * I + k]);
        want_gx[(t * B + b) * I + k] = a;
      }
      for (int64_t j = 0; j < G; ++j) {
        want_gb[j] += dG[j];
        for (int64_t k = 0; k < I; ++k) want_gwih[j * I + k] += dG[j] * static_cast<double>(x[(t * B + b) * I + k]);
        for (int64_t k = 0; k < H; ++k) want_gwhh[j * H + k] += dG[j] * hprev[(t * B + b) * H + k];
      }
    }
    dh = dh_next;
  }
  cpu::lstm_backward(p);
  for (auto* buf : {&gx, &gh0, &gc0, &gwih, &gwhh, &gbias, &ggates}) buf->check("lstm backward output");
  const double tolb = sizeof(T) == 4 ? 3e-4 : 1e-10;
  bmtest::expect_close(gx.data(), want_gx, tolb, tolb, what.str() + " grad_input");
  bmtest::expect_close(gh0.data(), dh, tolb, tolb, what.str() + " grad_h0");
  bmtest::expect_close(gc0.data(), dc, tolb, tolb, what.str() + " grad_c0");
  bmtest::expect_close(gwih.data(), want_gwih, tolb, tolb, what.str() + " grad_w_ih");
  bmtest::expect_close(gwhh.data(), want_gwhh, tolb, tolb, what.str() + " grad_w_hh");
  bmtest::expect_close(gbias.data(), want_gb, tolb, tolb, what.str() + " grad_bias");
}

// True when fn throws std::invalid_argument whose message contains `needle`.
template <typename F>
bool rejects(F&& fn, const char* needle) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return std::strstr(e.what(), needle) != nullptr;
  }
  return false;
}

}  // namespace

// Random cases per dtype (fuzz_cases scales them); each is forward, inference and backward.
BM_TEST(lstm_random_f32) {
  for (int64_t n = bmtest::fuzz_cases(80); n > 0; --n, ++bmtest::cases_run()) run_lstm_case<float>();
}
BM_TEST(lstm_random_f64) {
  for (int64_t n = bmtest::fuzz_cases(30); n > 0; --n, ++bmtest::cases_run()) run_lstm_case<double>();
}

BM_TEST(lstm_rejects_bad_parameters) {
  LstmParams p;
  p.T = 1;
  p.B = 2;
  p.I = 1;
  p.H = 0;
  const auto forward = [&] { cpu::lstm_forward(p); };
  BM_CHECK(rejects(forward, "H >= 1"), "H = 0 not rejected with a message naming H");
  ++bmtest::cases_run();
  const int64_t bad_lengths[2] = {1, 2};
  float dummy[64] = {};
  p.H = 1;
  p.T = 2;  // so that both lengths lie in [0, T] and only their order is wrong
  p.lengths = bad_lengths;
  p.input = p.h0 = p.c0 = p.w_ih = p.w_hh = dummy;
  p.output = p.h_n = p.c_n = p.gates = p.cells = dummy;
  BM_CHECK(rejects(forward, "non-increasing"), "increasing lengths not rejected");
  ++bmtest::cases_run();
  p.lengths = nullptr;
  p.cells = nullptr;  // gates without cells: neither the saving nor the inference form
  BM_CHECK(rejects(forward, "gates and cells"), "gates without cells not rejected");
  ++bmtest::cases_run();
}
