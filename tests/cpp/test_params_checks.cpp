// Every CPU entry point validates its Params (the rule in bigmodel/common.h): a bad value throws
// std::invalid_argument naming the family and the field, before any work; an empty problem
// with null pointers is a no-op.
#include <stdexcept>
#include <string>

#include "bigmodel/attention.h"
#include "bigmodel/conv.h"
#include "bigmodel/pool.h"
#include "harness.h"

namespace {

using namespace bigmodel;

template <typename F>
void expect_invalid(F&& f, const std::string& want) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    BM_CHECK(std::string(e.what()).find(want) != std::string::npos, "message '" << e.what() << "' lacks '" << want << "'");
    ++bmtest::cases_run();
    return;
  }
  throw bmtest::Failure("no std::invalid_argument for: " + want);
}

// Edits one field of a valid `p` and expects call(p) to reject it with `want` in the message.
template <typename P, typename Edit, typename Call>
void rejects(P p, Edit edit, Call call, const char* want) {
  edit(p);
  expect_invalid([&] { call(p); }, want);
}

Pool2dParams pool_params(float* x, float* y) {
  Pool2dParams p;
  p.N = 1, p.C = 2, p.H = 4, p.W = 4, p.OH = 2, p.OW = 2, p.kH = p.kW = p.sH = p.sW = 2;
  p.input = x;
  p.output = y;
  p.grad_output = y;
  p.grad_input = x;
  return p;
}

BM_TEST(params_checks_pool) {
  float x[32] = {}, y[8] = {};
  cpu::max_pool2d_forward(pool_params(x, y));  // valid: runs
  auto bad = [&](auto edit, const char* want) { rejects(pool_params(x, y), edit, cpu::max_pool2d_forward, want); };
  bad([](Pool2dParams& p) { p.dtype = DType::f16; }, "pool2d: dtype");
  bad([](Pool2dParams& p) { p.kH = 0; }, "pool2d: kH must be >= 1");
  bad([](Pool2dParams& p) { p.sW = -1; }, "pool2d: sW");
  bad([](Pool2dParams& p) { p.C = -3; }, "pool2d: C must be >= 0");
  bad([](Pool2dParams& p) { p.input = nullptr; }, "pool2d: input is a null pointer");
  bad([](Pool2dParams& p) { p.layout = static_cast<Layout>(7); }, "pool2d: unknown layout");
  Pool2dParams q = pool_params(x, y);
  q.input = nullptr;  // the max backward recomputes the argmax: it needs the input
  expect_invalid([&] { cpu::max_pool2d_backward(q); }, "pool2d: input is a null pointer");
  cpu::avg_pool2d_backward(q);  // the average backward does not read it
  q.grad_output = nullptr;
  expect_invalid([&] { cpu::avg_pool2d_backward(q); }, "pool2d: grad_output");
  Pool2dParams empty = pool_params(nullptr, nullptr);
  empty.N = 0;
  cpu::avg_pool2d_forward(empty);  // nothing to read or write
}

Conv2dParams conv_params(float* x, float* w, float* y) {
  Conv2dParams p;
  p.N = 1, p.IC = 2, p.H = 3, p.W = 3, p.OC = 2, p.OH = 1, p.OW = 1, p.KH = p.KW = 3;
  p.input = x;
  p.weight = w;
  p.output = y;
  p.grad_output = y;
  p.grad_input = x;
  p.grad_weight = w;
  return p;
}

BM_TEST(params_checks_conv) {
  float x[18] = {}, w[36] = {}, y[2] = {};
  cpu::conv2d_forward(conv_params(x, w, y));
  auto bad = [&](auto edit, const char* want) { rejects(conv_params(x, w, y), edit, cpu::conv2d_forward, want); };
  bad([](Conv2dParams& p) { p.dtype = DType::bf16; }, "conv2d: dtype");
  bad([](Conv2dParams& p) { p.groups = 0; }, "conv2d: groups must be >= 1");
  bad([](Conv2dParams& p) { p.groups = 2, p.OC = 3; }, "must be divisible by groups");
  bad([](Conv2dParams& p) { p.dH = 0; }, "conv2d: dH");
  bad([](Conv2dParams& p) { p.weight = nullptr; }, "conv2d: weight is a null pointer");
  Conv2dParams q = conv_params(x, w, y);
  q.grad_input = nullptr;
  expect_invalid([&] { cpu::conv2d_backward_input(q); }, "conv2d: grad_input");
  q = conv_params(x, w, y);
  q.input = nullptr;
  expect_invalid([&] { cpu::conv2d_backward_weight(q); }, "conv2d: input");
  Conv2dParams empty = conv_params(nullptr, nullptr, nullptr);
  empty.N = 0;
  cpu::conv2d_forward(empty);
  cpu::conv2d_backward_input(empty);
}

AttentionParams attn_params(float* q, float* o, float* lse) {
  AttentionParams p;
  p.B = 1, p.Hq = 2, p.Hkv = 1, p.L = 2, p.S = 2, p.E = 2, p.Ev = 2;
  p.query = p.key = p.value = q;
  p.q_sb = p.k_sb = p.v_sb = 8, p.q_sh = 4, p.q_sl = p.k_sl = p.v_sl = 2;
  p.output = o;
  p.logsumexp = lse;
  return p;
}

BM_TEST(params_checks_attention) {
  float q[8] = {}, o[8] = {}, lse[4] = {};
  cpu::attention_forward(attn_params(q, o, lse));
  auto bad = [&](auto edit, const char* want) { rejects(attn_params(q, o, lse), edit, cpu::attention_forward, want); };
  bad([](AttentionParams& p) { p.dtype = DType::f16; }, "attention: dtype");
  bad([](AttentionParams& p) { p.Hkv = 0; }, "attention: Hkv must be >= 1");
  bad([](AttentionParams& p) { p.Hq = 3, p.Hkv = 2; }, "must be a multiple of Hkv");
  bad([](AttentionParams& p) { p.dropout_p = 1.5; }, "attention: dropout_p");
  bad([](AttentionParams& p) { p.E = -1; }, "attention: E must be >= 0");
  bad([](AttentionParams& p) { p.key = nullptr; }, "attention: key is a null pointer");
  bad([](AttentionParams& p) { p.mask_kind = AttentionMask::boolean; }, "attention: mask is a null pointer");
  AttentionParams b = attn_params(q, o, lse);
  expect_invalid([&] { cpu::attention_backward(b); }, "attention: grad_output is a null pointer");
}

}  // namespace
