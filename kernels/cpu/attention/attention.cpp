// Entry points of the CPU attention kernels: parameter validation (see bigmodel/common.h), per-ISA
// dispatch, and the dropout mask helper.
#include "bigmodel/attention.h"

#include <string>
#include <utility>

#include "cpu/check.h"
#include "cpu/dispatch.h"

namespace bigmodel::cpu {

BIGMODEL_ISA_DECLARE(void, attention_forward, (const AttentionParams&))
BIGMODEL_ISA_DECLARE(void, attention_backward, (const AttentionParams&))

namespace {

constexpr const char* kAttn = "attention";

// Sizes, heads, mask and dropout; returns whether there is any query row to compute.
bool check_shape(const AttentionParams& p) {
  check::float_dtype(kAttn, p.dtype);
  for (const auto& [name, v] : {std::pair{"B", p.B}, {"L", p.L}, {"S", p.S}, {"E", p.E}, {"Ev", p.Ev}})
    check::at_least(kAttn, name, v, 0);
  check::at_least(kAttn, "Hq", p.Hq, 1);
  check::at_least(kAttn, "Hkv", p.Hkv, 1);
  if (p.Hq % p.Hkv != 0)
    check::fail(kAttn, "Hq (" + std::to_string(p.Hq) + ") must be a multiple of Hkv (" + std::to_string(p.Hkv) + ")");
  if (!(p.dropout_p >= 0.0 && p.dropout_p <= 1.0))
    check::fail(kAttn, "dropout_p must lie in [0, 1], got " + std::to_string(p.dropout_p));
  if (p.mask_kind != AttentionMask::none && p.mask_kind != AttentionMask::boolean &&
      p.mask_kind != AttentionMask::additive)
    check::fail(kAttn, "unknown mask kind");
  const bool any = p.B > 0 && p.L > 0;
  if (any && p.mask_kind != AttentionMask::none && p.S > 0) check::not_null(kAttn, p.mask, "mask");
  if (any) check::not_null(kAttn, p.logsumexp, "logsumexp");
  if (any && p.Ev > 0) check::not_null(kAttn, p.output, "output");
  if (any && p.E > 0) check::not_null(kAttn, p.query, "query");
  if (p.B > 0 && p.S > 0 && p.E > 0) check::not_null(kAttn, p.key, "key");
  if (p.B > 0 && p.S > 0 && p.Ev > 0) check::not_null(kAttn, p.value, "value");
  return any;
}

}  // namespace

void attention_forward(const AttentionParams& p) {
  check_shape(p);
  BIGMODEL_ISA_CALL(attention_forward, p);
}

void attention_backward(const AttentionParams& p) {
  const bool any = check_shape(p);
  if (any && p.Ev > 0) check::not_null(kAttn, p.grad_output, "grad_output");
  if (any && p.E > 0) check::not_null(kAttn, p.grad_query, "grad_query");
  if (p.B > 0 && p.S > 0 && p.E > 0) check::not_null(kAttn, p.grad_key, "grad_key");
  if (p.B > 0 && p.S > 0 && p.Ev > 0) check::not_null(kAttn, p.grad_value, "grad_value");
  BIGMODEL_ISA_CALL(attention_backward, p);
}

void attention_dropout_mask(uint64_t seed, int64_t batch_heads, int64_t L, int64_t S, double p, uint8_t* out) {
  const uint32_t threshold = dropout_threshold(p);
  for (int64_t bh = 0; bh < batch_heads; ++bh) {
    for (int64_t i = 0; i < L; ++i) {
      const uint32_t key = dropout_row_key(seed, bh, i);
      uint8_t* row = out + (bh * L + i) * S;
      for (int64_t j = 0; j < S; ++j) row[j] = dropout_keep(key, j, threshold) ? 1 : 0;
    }
  }
}

}  // namespace bigmodel::cpu
