// LSTM ops: checks and allocation (shared with CUDA), plus the CPU registration.
#include <torch/library.h>

#include "lstm_binding.h"

namespace bigmodel::binding {
namespace {

// Dtype of the saved gates / cells: float32 for the 16-bit types (CUDA), else the input's.
at::ScalarType work_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

void check_dense(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.layout() == at::kStrided, op, ": ", arg, " must be a dense (strided) tensor");
}

// Everything one call needs after validation: sizes, and the Params with sizes, dtype, flags,
// threads and the (contiguous) argument pointers filled in.
struct Prepared {
  at::Tensor input, hx, cx, w_ih, w_hh, b_ih, b_hh, lengths;  // contiguous
  LstmParams p;
};

Prepared prepare(const char* op, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                 const at::Tensor& w_ih, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                 const std::optional<at::Tensor>& b_hh, bool reverse, const std::optional<at::Tensor>& lengths) {
  TORCH_CHECK_VALUE(input.dim() == 3, op, ": expected input of shape (T, B, input_size), got a ", input.dim(),
                    "-D tensor of shape ", input.sizes());
  check_dense(op, "input", input);
  check_float_dtype(op, "input", input);
  TORCH_CHECK_VALUE(w_hh.dim() == 2 && w_hh.size(1) >= 1 && w_hh.size(0) == 4 * w_hh.size(1), op,
                    ": w_hh must have shape (4 * hidden_size, hidden_size) with hidden_size >= 1, got ",
                    w_hh.sizes());
  const int64_t H = w_hh.size(1);
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  TORCH_CHECK_VALUE(w_ih.dim() == 2 && w_ih.size(0) == 4 * H, op, ": w_ih must have shape (4 * hidden_size, ",
                    "input_size) = (", 4 * H, ", input_size), got ", w_ih.sizes());
  TORCH_CHECK_VALUE(w_ih.size(1) == I, op, ": input has ", I, " features (its last dimension) but w_ih expects ",
                    "input_size = ", w_ih.size(1));
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"hx", &hx}, {"cx", &cx}}) {
    TORCH_CHECK_VALUE(t->dim() == 2 && t->size(0) == B && t->size(1) == H, op, ": ", name,
                      " must have shape (batch, hidden_size) = (", B, ", ", H, "), got ", t->sizes());
  }
  TORCH_CHECK_VALUE(b_ih.has_value() == b_hh.has_value(), op, ": give both b_ih and b_hh or neither");
  const std::pair<const char*, const at::Tensor*> args[] = {{"hx", &hx}, {"cx", &cx}, {"w_ih", &w_ih}, {"w_hh", &w_hh}};
  for (auto [name, t] : args) {
    check_dense(op, name, *t);
    check_same(op, name, *t, "input", input);
  }
  if (b_ih.has_value()) {
    for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"b_ih", &*b_ih}, {"b_hh", &*b_hh}}) {
      TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == 4 * H, op, ": ", name, " must have shape (4 * hidden_size,) = (",
                        4 * H, ",), got ", t->sizes());
      check_dense(op, name, *t);
      check_same(op, name, *t, "input", input);
    }
  }

  Prepared r;
  r.input = input.contiguous();
  r.hx = hx.contiguous();
  r.cx = cx.contiguous();
  r.w_ih = w_ih.contiguous();
  r.w_hh = w_hh.contiguous();
  LstmParams& p = r.p;
  if (lengths.has_value()) {
    const at::Tensor& l = *lengths;
    TORCH_CHECK_TYPE(l.scalar_type() == at::kLong, op, ": lengths must be an int64 tensor, got ", l.scalar_type());
    TORCH_CHECK_VALUE(l.device().is_cpu(), op, ": lengths must be a CPU tensor (as PackedSequence.batch_sizes), got ",
                      l.device());
    TORCH_CHECK_VALUE(l.dim() == 1 && l.size(0) == B, op, ": lengths must have shape (batch,) = (", B, ",), got ",
                      l.sizes());
    TORCH_CHECK_VALUE(!reverse, op, ": lengths cannot be combined with reverse=True; reverse each sequence within "
                      "its length first (bigmodel.nn.LSTM does this for packed sequences)");
    r.lengths = l.contiguous();
    const int64_t* lp = r.lengths.const_data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      TORCH_CHECK_VALUE(lp[b] >= 0 && lp[b] <= T, op, ": lengths[", b, "] = ", lp[b], " is outside [0, T] = [0, ",
                        T, "]");
      TORCH_CHECK_VALUE(b == 0 || lp[b] <= lp[b - 1], op, ": lengths must be sorted in non-increasing order ",
                        "(as a PackedSequence's), but lengths[", b, "] = ", lp[b], " > lengths[", b - 1, "] = ",
                        lp[b - 1]);
    }
    p.lengths = lp;
  }
  p.dtype = to_dtype(input.scalar_type());
  p.work_dtype = to_dtype(work_type(input.scalar_type()));
  p.T = T;
  p.B = B;
  p.I = I;
  p.H = H;
  p.reverse = reverse;
  p.has_bias = b_ih.has_value();
  p.input = r.input.const_data_ptr();
  p.h0 = r.hx.const_data_ptr();
  p.c0 = r.cx.const_data_ptr();
  p.w_ih = r.w_ih.const_data_ptr();
  p.w_hh = r.w_hh.const_data_ptr();
  if (p.has_bias) {
    r.b_ih = b_ih->contiguous();
    r.b_hh = b_hh->contiguous();
    p.b_ih = r.b_ih.const_data_ptr();
    p.b_hh = r.b_hh.const_data_ptr();
  }
  p.num_threads = num_threads();
  return r;
}

void check_saved(const char* op, const char* arg, const at::Tensor& t, at::IntArrayRef want, at::ScalarType dtype,
                 const at::Tensor& input) {
  TORCH_CHECK_VALUE(t.sizes() == want, op, ": ", arg, " must have shape ", want, ", got ", t.sizes());
  TORCH_CHECK_VALUE(t.device() == input.device(), op, ": ", arg, " is on ", t.device(), " but input is on ",
                    input.device());
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", arg, " must have dtype ", dtype, ", got ", t.scalar_type());
}

// lstm and lstm_cell; `op` names the calling op in error messages.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_lstm(
    const LstmKernel& kernel, const char* op, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
    const std::optional<at::Tensor>& b_hh, bool reverse, const std::optional<at::Tensor>& lengths,
    bool save_for_backward) {
  Prepared r = prepare(op, input, hx, cx, w_ih, w_hh, b_ih, b_hh, reverse, lengths);
  LstmParams& p = r.p;
  const auto opts = input.options();
  const auto wopts = opts.dtype(work_type(input.scalar_type()));
  at::Tensor output = empty_activation({p.T, p.B, p.H}, opts);
  at::Tensor h_n = at::empty({p.B, p.H}, opts), c_n = at::empty({p.B, p.H}, opts);
  at::Tensor gates, cells;
  if (save_for_backward) {
    gates = empty_activation({p.T, p.B, 4 * p.H}, wopts);
    cells = empty_activation({p.T, p.B, p.H}, wopts);
  } else if (!input.is_cpu()) {
    // Inference on CUDA: the gates / cells are scratch (the caching allocator reuses the memory).
    at::Tensor scratch = at::empty({p.T * p.B * 5 * p.H}, wopts);
    gates = scratch.narrow(0, 0, p.T * p.B * 4 * p.H).view({p.T, p.B, 4 * p.H});
    cells = scratch.narrow(0, p.T * p.B * 4 * p.H, p.T * p.B * p.H).view({p.T, p.B, p.H});
  }
  // Inference on the CPU: no gates or cells at all (the kernel streams the steps through cache).
  p.output = output.mutable_data_ptr();
  p.h_n = h_n.mutable_data_ptr();
  p.c_n = c_n.mutable_data_ptr();
  p.gates = gates.defined() ? gates.mutable_data_ptr() : nullptr;
  p.cells = cells.defined() ? cells.mutable_data_ptr() : nullptr;
  run_kernel([&] { kernel(p); });
  if (!save_for_backward) return {output, h_n, c_n, at::empty({0}, wopts), at::empty({0}, wopts)};
  return {output, h_n, c_n, gates, cells};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm(
    const LstmKernel& forward, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
    const std::optional<at::Tensor>& b_hh, bool reverse, const std::optional<at::Tensor>& lengths,
    bool save_for_backward) {
  return run_lstm(forward, "lstm", input, hx, cx, w_ih, w_hh, b_ih, b_hh, reverse, lengths, save_for_backward);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const LstmKernel& backward, const std::optional<at::Tensor>& grad_output,
    const std::optional<at::Tensor>& grad_h_n, const std::optional<at::Tensor>& grad_c_n, const at::Tensor& input,
    const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells, bool reverse,
    const std::optional<at::Tensor>& lengths) {
  const char* op = "lstm_backward";
  Prepared r = prepare(op, input, hx, cx, w_ih, w_hh, std::nullopt, std::nullopt, reverse, lengths);
  LstmParams& p = r.p;
  const at::ScalarType wt = work_type(input.scalar_type());
  check_saved(op, "output", output, {p.T, p.B, p.H}, input.scalar_type(), input);
  check_saved(op, "gates", gates, {p.T, p.B, 4 * p.H}, wt, input);
  check_saved(op, "cells", cells, {p.T, p.B, p.H}, wt, input);
  at::Tensor out_c = output.contiguous(), gates_c = gates.contiguous(), cells_c = cells.contiguous();
  at::Tensor go, ghn, gcn;
  if (grad_output.has_value()) {
    check_saved(op, "grad_output", *grad_output, {p.T, p.B, p.H}, input.scalar_type(), input);
    go = grad_output->contiguous();
    p.grad_output = go.const_data_ptr();
  }
  if (grad_h_n.has_value()) {
    check_saved(op, "grad_h_n", *grad_h_n, {p.B, p.H}, input.scalar_type(), input);
    ghn = grad_h_n->contiguous();
    p.grad_h_n = ghn.const_data_ptr();
  }
  if (grad_c_n.has_value()) {
    check_saved(op, "grad_c_n", *grad_c_n, {p.B, p.H}, input.scalar_type(), input);
    gcn = grad_c_n->contiguous();
    p.grad_c_n = gcn.const_data_ptr();
  }
  p.output = const_cast<void*>(out_c.const_data_ptr());
  p.gates = const_cast<void*>(gates_c.const_data_ptr());
  p.cells = const_cast<void*>(cells_c.const_data_ptr());

  const auto opts = input.options();
  at::Tensor grad_gates = empty_activation({p.T, p.B, 4 * p.H}, opts.dtype(wt));
  at::Tensor grad_input = empty_activation({p.T, p.B, p.I}, opts);
  at::Tensor grad_hx = at::empty({p.B, p.H}, opts), grad_cx = at::empty({p.B, p.H}, opts);
  at::Tensor grad_w_ih = at::empty({4 * p.H, p.I}, opts), grad_w_hh = at::empty({4 * p.H, p.H}, opts);
  at::Tensor grad_bias = at::empty({4 * p.H}, opts);
  p.grad_gates = grad_gates.mutable_data_ptr();
  p.grad_input = grad_input.mutable_data_ptr();
  p.grad_h0 = grad_hx.mutable_data_ptr();
  p.grad_c0 = grad_cx.mutable_data_ptr();
  p.grad_w_ih = grad_w_ih.mutable_data_ptr();
  p.grad_w_hh = grad_w_hh.mutable_data_ptr();
  p.grad_bias = grad_bias.mutable_data_ptr();
  run_kernel([&] { backward(p); });
  return {grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell(const LstmKernel& forward, const at::Tensor& input,
                                                         const at::Tensor& hx, const at::Tensor& cx,
                                                         const at::Tensor& w_ih, const at::Tensor& w_hh,
                                                         const std::optional<at::Tensor>& b_ih,
                                                         const std::optional<at::Tensor>& b_hh) {
  const char* op = "lstm_cell";
  TORCH_CHECK_VALUE(input.dim() == 1 || input.dim() == 2, op, ": expected input of shape (batch, input_size) or ",
                    "(input_size,), got a ", input.dim(), "-D tensor of shape ", input.sizes());
  const bool batched = input.dim() == 2;
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"hx", &hx}, {"cx", &cx}}) {
    TORCH_CHECK_VALUE(t->dim() == input.dim(), op, ": ", name, " must be ", batched ? "2-D (batch, hidden_size)" :
                      "1-D (hidden_size,)", " for a ", input.dim(), "-D input, got shape ", t->sizes());
  }
  at::Tensor x = batched ? input.unsqueeze(0) : input.unsqueeze(0).unsqueeze(0);
  at::Tensor h = batched ? hx : hx.unsqueeze(0), c = batched ? cx : cx.unsqueeze(0);
  auto [out, h_n, c_n, gates, cells] = run_lstm(forward, op, x, h, c, w_ih, w_hh, b_ih, b_hh, false, std::nullopt, true);
  (void)out;
  (void)cells;
  if (!batched) return {h_n.squeeze(0), c_n.squeeze(0), gates.squeeze(0).squeeze(0)};
  return {h_n, c_n, gates.squeeze(0)};
}

}  // namespace bigmodel::binding

TORCH_LIBRARY_IMPL(bigmodel, CPU, m) {
  using namespace bigmodel;
  m.impl("lstm", binding::bind(&binding::lstm, cpu::lstm_forward));
  m.impl("lstm_backward", binding::bind(&binding::lstm_backward, cpu::lstm_backward));
  m.impl("lstm_cell", binding::bind(&binding::lstm_cell, cpu::lstm_forward));
}
