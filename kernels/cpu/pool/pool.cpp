// Entry points of the CPU pooling kernels: the output-size rule, parameter validation (see
// bigmodel/common.h) and per-ISA dispatch.
#include "bigmodel/pool.h"

#include <utility>

#include "cpu/check.h"
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

namespace {

constexpr const char* kPool = "pool2d";

// Sizes, window and dtype; returns whether there is any work (an empty problem reads nothing).
bool check_shape(const Pool2dParams& p) {
  check::float_dtype(kPool, p.dtype);
  check::layout(kPool, p.layout);
  for (const auto& [name, v] : {std::pair{"N", p.N}, {"C", p.C}, {"H", p.H}, {"W", p.W}, {"OH", p.OH}, {"OW", p.OW},
                                {"pH", p.pH}, {"pW", p.pW}})
    check::at_least(kPool, name, v, 0);
  for (const auto& [name, v] : {std::pair{"kH", p.kH}, {"kW", p.kW}, {"sH", p.sH}, {"sW", p.sW}, {"dH", p.dH},
                                {"dW", p.dW}})
    check::at_least(kPool, name, v, 1);
  return p.N > 0 && p.C > 0 && p.H > 0 && p.W > 0 && p.OH > 0 && p.OW > 0;
}

void check_forward(const Pool2dParams& p) {
  if (!check_shape(p)) return;
  check::not_null(kPool, p.input, "input");
  check::not_null(kPool, p.output, "output");
}

void check_backward(const Pool2dParams& p, bool reads_input) {
  if (!check_shape(p)) return;
  check::not_null(kPool, p.grad_output, "grad_output");
  check::not_null(kPool, p.grad_input, "grad_input");
  if (reads_input) check::not_null(kPool, p.input, "input");
}

}  // namespace

void max_pool2d_forward(const Pool2dParams& p) {
  check_forward(p);
  BIGMODEL_ISA_CALL(max_pool2d_forward, p);
}
void max_pool2d_backward(const Pool2dParams& p) {
  check_backward(p, true);  // the argmax is recomputed from the input
  BIGMODEL_ISA_CALL(max_pool2d_backward, p);
}
void avg_pool2d_forward(const Pool2dParams& p) {
  check_forward(p);
  BIGMODEL_ISA_CALL(avg_pool2d_forward, p);
}
void avg_pool2d_backward(const Pool2dParams& p) {
  check_backward(p, false);
  BIGMODEL_ISA_CALL(avg_pool2d_backward, p);
}

}  // namespace cpu
}  // namespace bigmodel
