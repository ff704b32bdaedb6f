// Fused attention forward (output + logsumexp) and backward against a double-precision softmax
// attention: random B / Hq / Hkv (GQA) / L / S / E / Ev incl. odd head dims, L = 1, S = 1, S = 0;
// strided and broadcast (stride 0) inputs; bool and additive masks (also broadcast); causal with
// L != S; fully masked rows; dropout (the header's hash decides the kept elements).
#include <algorithm>

#include "bigmodel/attention.h"
#include "harness.h"

namespace {

using namespace bigmodel;

// A (B, Hh, R, D) tensor with the last dim contiguous and random strides for the others:
// BHRD, BRHD (heads interleaved), padded rows, or broadcast over batch / heads.
template <typename T>
struct Strided4 {
  int64_t sb = 0, sh = 0, sl = 0;
  bmtest::Buffer<T> buf{0};
  void make(int64_t B, int64_t Hh, int64_t R, int64_t D, bool allow_broadcast) {
    const int form = static_cast<int>(bmtest::randint(0, allow_broadcast ? 3 : 2));
    const int64_t pad = bmtest::randint(0, 3);
    if (form == 1) {  // (B, R, Hh, D) memory
      sh = D + pad;
      sl = Hh * sh;
      sb = R * sl;
    } else {
      sl = D + pad;
      sh = R * sl;
      sb = Hh * sh;
      if (form == 3) {
        if (bmtest::coin()) sb = 0;
        else sh = 0;
      }
    }
    const int64_t n = (B > 0 && Hh > 0 && R > 0 && D > 0) ? (B - 1) * sb + (Hh - 1) * sh + (R - 1) * sl + D : 0;
    buf = bmtest::Buffer<T>(n);
    buf.fill_random(-2, 2);
  }
  double at(int64_t b, int64_t h, int64_t r, int64_t d) const {
    return static_cast<double>(buf[b * sb + h * sh + r * sl + d]);
  }
};

template <typename T>
void run_attention_case() {
  AttentionParams p;
  p.dtype = sizeof(T) == 4 ? DType::f32 : DType::f64;
  p.B = bmtest::randint(1, 2);
  p.Hkv = bmtest::randint(1, 2);
  p.Hq = p.Hkv * (bmtest::coin(0.4) ? bmtest::randint(2, 3) : 1);
  p.L = bmtest::coin(0.15) ? 1 : bmtest::randint(1, 70);
  const double rs = bmtest::uniform(0, 1);
  p.S = rs < 0.05 ? 0 : rs < 0.2 ? 1 : bmtest::randint(1, 90);
  p.E = bmtest::coin(0.5) ? bmtest::randint(1, 20) : bmtest::randint(21, 70);
  p.Ev = bmtest::coin(0.7) ? p.E : bmtest::randint(1, 40);
  p.causal = bmtest::coin(0.4);
  p.scale = bmtest::coin() ? 1.0 / std::sqrt(static_cast<double>(p.E)) : bmtest::uniform(0.05, 1.5);
  p.dropout_p = bmtest::coin(0.2) ? (bmtest::coin(0.1) ? 1.0 : bmtest::uniform(0.05, 0.6)) : 0.0;
  p.seed = static_cast<uint64_t>(bmtest::randint(0, 1 << 30)) * 7919u;
  p.num_threads = static_cast<int>(bmtest::randint(1, 2));
  const int64_t B = p.B, Hq = p.Hq, Hkv = p.Hkv, L = p.L, S = p.S, E = p.E, Ev = p.Ev, group = Hq / Hkv;

  Strided4<T> q, k, v, go;
  q.make(B, Hq, L, E, false);
  k.make(B, Hkv, S, E, true);
  v.make(B, Hkv, S, Ev, true);
  go.make(B, Hq, L, Ev, false);
  p.query = q.buf.data();
  p.q_sb = q.sb, p.q_sh = q.sh, p.q_sl = q.sl;
  p.key = k.buf.data();
  p.k_sb = k.sb, p.k_sh = k.sh, p.k_sl = k.sl;
  p.value = v.buf.data();
  p.v_sb = v.sb, p.v_sh = v.sh, p.v_sl = v.sl;

  // mask (B, Hq, L, S): none, bool (with ~20% visible-false, sometimes whole rows) or additive
  const int mk = static_cast<int>(bmtest::randint(0, 2));
  p.mask_kind = static_cast<AttentionMask>(mk);
  const bool m_bcast_b = bmtest::coin(), m_bcast_h = bmtest::coin();
  p.m_sl = S + bmtest::randint(0, 2);
  p.m_sh = m_bcast_h ? 0 : L * p.m_sl;
  p.m_sb = m_bcast_b ? 0 : (m_bcast_h ? 1 : Hq) * L * p.m_sl;
  const int64_t m_n = (L > 0 && S > 0) ? (B - 1) * p.m_sb + (Hq - 1) * p.m_sh + (L - 1) * p.m_sl + S : 0;
  bmtest::Buffer<uint8_t> bmask(mk == 1 ? m_n : 0);
  bmtest::Buffer<T> amask(mk == 2 ? m_n : 0);
  if (mk == 1) {
    for (int64_t i = 0; i < m_n; ++i) bmask[i] = bmtest::coin(0.8) ? 1 : 0;
    if (L > 1 && S > 0 && bmtest::coin(0.5))  // one fully masked row
      for (int64_t j = 0; j < S; ++j) bmask[(L / 2) * p.m_sl + j] = 0;
    p.mask = bmask.data();
  } else if (mk == 2) {
    amask.fill_random(-3, 3);
    for (int64_t i = 0; i < m_n; ++i)
      if (bmtest::coin(0.1)) amask[i] = -std::numeric_limits<T>::infinity();
    p.mask = amask.data();
  }

  bmtest::Buffer<T> out(B * Hq * L * Ev), gq(B * Hq * L * E), gk(B * Hkv * S * E), gv(B * Hkv * S * Ev);
  bmtest::Buffer<T> lse(B * Hq * L);  // float32 for f32, float64 for f64: the dtype of T
  out.fill(T(-777));
  p.output = out.data();
  p.logsumexp = lse.data();

  std::vector<double> want_out(out.size(), 0.0), want_lse(lse.size()), want_gq(gq.size(), 0.0), want_gk(gk.size(), 0.0),
      want_gv(gv.size(), 0.0);
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const double keep_scale = p.dropout_p < 1.0 ? 1.0 / (1.0 - p.dropout_p) : 0.0;
  std::vector<double> s(S), P(S), dP(S);
  std::vector<char> vis(S);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < L; ++i) {
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < S; ++j) {
          bool visible = !p.causal || j <= i;
          double add = 0;
          const int64_t mo = b * p.m_sb + h * p.m_sh + i * p.m_sl + j;
          if (mk == 1) visible = visible && bmask[mo] != 0;
          if (mk == 2) add = static_cast<double>(amask[mo]);
          double d = 0;
          for (int64_t e = 0; e < E; ++e) d += q.at(b, h, i, e) * k.at(b, hk, j, e);
          s[j] = p.scale * d + add;
          vis[j] = visible && s[j] != -std::numeric_limits<double>::infinity();
          if (vis[j]) m = std::max(m, s[j]);
        }
        const int64_t row = (b * Hq + h) * L + i;
        if (m == -std::numeric_limits<double>::infinity()) {
          want_lse[row] = -std::numeric_limits<double>::infinity();
          continue;  // output and gradients zero
        }
        double sum = 0;
        for (int64_t j = 0; j < S; ++j) {
          P[j] = vis[j] ? std::exp(s[j] - m) : 0.0;
          sum += P[j];
        }
        want_lse[row] = m + std::log(sum);
        const uint32_t key = dropout_row_key(p.seed, b * Hq + h, i);
        double dot = 0;
        for (int64_t j = 0; j < S; ++j) {
          P[j] /= sum;
          const double keep = threshold == 0 ? 1.0 : (dropout_keep(key, j, threshold) ? keep_scale : 0.0);
          const double pd = P[j] * keep;
          for (int64_t e = 0; e < Ev; ++e) want_out[row * Ev + e] += pd * v.at(b, hk, j, e);
          double g = 0;
          for (int64_t e = 0; e < Ev; ++e) g += go.at(b, h, i, e) * v.at(b, hk, j, e);
          dP[j] = g * keep;
          dot += P[j] * dP[j];
          for (int64_t e = 0; e < Ev; ++e) want_gv[((b * Hkv + hk) * S + j) * Ev + e] += pd * go.at(b, h, i, e);
        }
        for (int64_t j = 0; j < S; ++j) {
          const double ds = P[j] * (dP[j] - dot) * p.scale;
          if (ds == 0) continue;
          for (int64_t e = 0; e < E; ++e) {
            want_gq[row * E + e] += ds * k.at(b, hk, j, e);
            want_gk[((b * Hkv + hk) * S + j) * E + e] += ds * q.at(b, h, i, e);
          }
        }
      }
    }
  std::ostringstream what;
  what << "attention B=" << B << " Hq=" << Hq << " Hkv=" << Hkv << " L=" << L << " S=" << S << " E=" << E
       << " Ev=" << Ev << " causal=" << p.causal << " mask=" << mk << " dropout=" << p.dropout_p
       << " threads=" << p.num_threads;
  const double tol = sizeof(T) == 4 ? 2e-4 : 1e-10;
  cpu::attention_forward(p);
  out.check("attention output");
  lse.check("attention logsumexp");
  bmtest::expect_close(out.data(), want_out, tol, tol, what.str() + " output");
  bmtest::expect_close(lse.data(), want_lse, tol, tol, what.str() + " logsumexp");

  p.grad_output = go.buf.data();
  p.go_sb = go.sb, p.go_sh = go.sh, p.go_sl = go.sl;
  gq.fill(T(-777));
  gk.fill(T(-777));
  gv.fill(T(-777));
  p.grad_query = gq.data();
  p.grad_key = gk.data();
  p.grad_value = gv.data();
  cpu::attention_backward(p);
  gq.check("attention grad_query");
  gk.check("attention grad_key");
  gv.check("attention grad_value");
  const double tolb = sizeof(T) == 4 ? 1e-3 : 1e-9;
  bmtest::expect_close(gq.data(), want_gq, tolb, tolb, what.str() + " grad_query");
  bmtest::expect_close(gk.data(), want_gk, tolb, tolb, what.str() + " grad_key");
  bmtest::expect_close(gv.data(), want_gv, tolb, tolb, what.str() + " grad_value");
}

template <typename T>
void attention_random(int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    run_attention_case<T>();
    ++bmtest::cases_run();
  }
}

}  // namespace

BM_TEST(attention_random_f32) { attention_random<float>(bmtest::fuzz_cases(80)); }
BM_TEST(attention_random_f64) { attention_random<double>(bmtest::fuzz_cases(30)); }

BM_TEST(attention_dropout_mask_matches_hash) {
  const int64_t L = 7, S = 13;
  std::vector<uint8_t> m(2 * L * S);
  for (double pd : {0.0, 0.3, 1.0}) {
    cpu::attention_dropout_mask(99, 2, L, S, pd, m.data());
    int64_t kept = 0;
    for (int64_t bh = 0; bh < 2; ++bh)
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < S; ++j) {
          const bool want = dropout_keep(dropout_row_key(99, bh, i), j, dropout_threshold(pd));
          BM_CHECK(m[(bh * L + i) * S + j] == (want ? 1 : 0), "p=" << pd << " (" << bh << "," << i << "," << j << ")");
          kept += want;
        }
    if (pd == 0.0) BM_CHECK(kept == 2 * L * S, "p=0 dropped something");
    if (pd == 1.0) BM_CHECK(kept == 0, "p=1 kept something");
    ++bmtest::cases_run();
  }
}
