// Entry points of the CPU LSTM kernels: parameter validation, then per-ISA dispatch
// (kernels/cpu/lstm/lstm_{forward,inference,backward}_kernel.cpp).
#include "bigmodel/lstm.h"

#include <stdexcept>
#include <string>

#include "cpu/dispatch.h"

namespace bigmodel::cpu {

BIGMODEL_ISA_DECLARE(void, lstm_forward, (const LstmParams&))
BIGMODEL_ISA_DECLARE(void, lstm_inference, (const LstmParams&))
BIGMODEL_ISA_DECLARE(void, lstm_backward, (const LstmParams&))

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("lstm: " + what); }

void need(const void* ptr, const char* name) {
  if (ptr == nullptr) fail(std::string(name) + " is a null pointer");
}

void check_common(const LstmParams& p) {
  if (p.dtype != DType::f32 && p.dtype != DType::f64)
    fail(std::string("dtype must be float32 or float64 on the CPU, got ") + dtype_name(p.dtype));
  if (p.work_dtype != p.dtype) fail("work_dtype must equal dtype on the CPU");
  if (p.T < 0 || p.B < 0 || p.I < 0 || p.H < 1)
    fail("sizes must be T, B, I >= 0 and H >= 1, got T=" + std::to_string(p.T) + " B=" + std::to_string(p.B) +
         " I=" + std::to_string(p.I) + " H=" + std::to_string(p.H));
  if (p.lengths) {
    if (p.reverse) fail("lengths cannot be combined with reverse");
    for (int64_t b = 0; b < p.B; ++b) {
      if (p.lengths[b] < 0 || p.lengths[b] > p.T) fail("lengths must lie in [0, T]");
      if (b > 0 && p.lengths[b] > p.lengths[b - 1]) fail("lengths must be non-increasing");
    }
  }
  const bool any = p.B > 0;
  if (any) {
    need(p.h0, "h0");
    need(p.c0, "c0");
  }
  need(p.w_hh, "w_hh");
  if (p.I > 0) need(p.w_ih, "w_ih");
  if (p.has_bias) {
    need(p.b_ih, "b_ih");
    need(p.b_hh, "b_hh");
  }
  if (p.T > 0 && any) {
    need(p.output, "output");
    if (p.I > 0) need(p.input, "input");
  }
}

}  // namespace

void lstm_forward(const LstmParams& p) {
  check_common(p);
  if (p.B > 0) {
    need(p.h_n, "h_n");
    need(p.c_n, "c_n");
  }
  // gates and cells: both set (saved for the backward) or both null (inference).
  if ((p.gates == nullptr) != (p.cells == nullptr))
    fail("gates and cells must both be given (saved for the backward) or both be null (inference)");
  if (p.gates == nullptr) {
    BIGMODEL_ISA_CALL(lstm_inference, p);
  }
  BIGMODEL_ISA_CALL(lstm_forward, p);
}

void lstm_backward(const LstmParams& p) {
  check_common(p);
  if (p.B > 0) {
    need(p.grad_h0, "grad_h0");
    need(p.grad_c0, "grad_c0");
    if (p.T > 0) {
      need(p.gates, "gates");
      need(p.cells, "cells");
      need(p.grad_gates, "grad_gates");
    }
    if (p.T > 0 && p.I > 0) need(p.grad_input, "grad_input");
  }
  need(p.grad_w_hh, "grad_w_hh");
  need(p.grad_bias, "grad_bias");
  if (p.I > 0) need(p.grad_w_ih, "grad_w_ih");
  BIGMODEL_ISA_CALL(lstm_backward, p);
}

}  // namespace bigmodel::cpu
