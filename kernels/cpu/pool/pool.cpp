// Entry points of the CPU pooling kernels: the output-size rule and per-ISA dispatch.
#include "bigmodel/pool.h"

#include "cpu/dispatch.h"

namespace bigmodel {

int64_t pool_output_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  // floor division rounding towards -inf, as torch's div_rtn
  auto div_floor = [](int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  };
  int64_t out = div_floor(in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;  // the last window must start inside
  return out;
}

namespace cpu {

BIGMODEL_ISA_DECLARE(void, max_pool2d_forward, (const Pool2dParams&))
BIGMODEL_ISA_DECLARE(void, max_pool2d_backward, (const Pool2dParams&))
BIGMODEL_ISA_DECLARE(void, avg_pool2d_forward, (const Pool2dParams&))
BIGMODEL_ISA_DECLARE(void, avg_pool2d_backward, (const Pool2dParams&))

void max_pool2d_forward(const Pool2dParams& p) { BIGMODEL_ISA_CALL(max_pool2d_forward, p); }
void max_pool2d_backward(const Pool2dParams& p) { BIGMODEL_ISA_CALL(max_pool2d_backward, p); }
void avg_pool2d_forward(const Pool2dParams& p) { BIGMODEL_ISA_CALL(avg_pool2d_forward, p); }
void avg_pool2d_backward(const Pool2dParams& p) { BIGMODEL_ISA_CALL(avg_pool2d_backward, p); }

}  // namespace cpu
}  // namespace bigmodel
