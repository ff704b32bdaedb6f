// Entry points of the CPU attention kernels (per-ISA dispatch) and the dropout mask helper.
#include "bigmodel/attention.h"

#include "cpu/dispatch.h"

namespace bigmodel::cpu {

BIGMODEL_ISA_DECLARE(void, attention_forward, (const AttentionParams&))
BIGMODEL_ISA_DECLARE(void, attention_backward, (const AttentionParams&))

void attention_forward(const AttentionParams& p) { BIGMODEL_ISA_CALL(attention_forward, p); }
void attention_backward(const AttentionParams& p) { BIGMODEL_ISA_CALL(attention_backward, p); }

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
