// Attention ops: checks, broadcasting and allocation (shared with CUDA), the CPU registration,
// and scaled_dot_product_attention itself, a composite of the forward op (autograd flows through
// the forward op's registered formula).
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/randint.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "attention_binding.h"

namespace bigmodel::binding {
namespace {

using Shape = std::vector<int64_t>;

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

// Broadcast of two batch shapes (numpy rules); false if they do not broadcast.
bool broadcast_into(Shape& acc, at::IntArrayRef s) {
  const size_t n = std::max(acc.size(), s.size());
  Shape r(n, 1);
  for (size_t i = 0; i < n; ++i) {
    const int64_t a = i < n - acc.size() ? 1 : acc[i - (n - acc.size())];
    const int64_t b = i < n - s.size() ? 1 : s[i - (n - s.size())];
    if (a != b && a != 1 && b != 1) return false;
    r[i] = a == 1 ? b : a;
  }
  acc = r;
  return true;
}

// Everything a call needs after validation.
struct Prepared {
  at::Tensor q, k, v, mask;  // 4-D (B, H, rows, cols) views, last dimension contiguous
  Shape batch;               // broadcast batch shape of the output (..., Hq); may be empty
  Shape kv_batch;            // the same with the key/value head count
  AttentionParams p;
};

// `t` broadcast to `batch` + [rows, cols] and viewed as (B, H, rows, cols), broadcast dimensions
// with stride 0; copies only where the batch dims cannot be merged, or the last dimension is
// strided.
at::Tensor as_4d(const at::Tensor& t, const Shape& batch, int64_t rows, int64_t cols) {
  Shape full = batch;
  full.push_back(rows);
  full.push_back(cols);
  at::Tensor x = t.expand(full);
  int64_t B = 1;
  for (size_t i = 0; i + 1 < batch.size(); ++i) B *= batch[i];
  const int64_t H = batch.empty() ? 1 : batch.back();
  x = x.reshape({B, H, rows, cols});
  if (x.stride(3) != 1 && x.size(3) > 1) x = x.contiguous();
  return x;
}

// A (B, H, rows, cols) view as the kernels read it: data and the strides of its first three
// dimensions (the last is contiguous).
void set_operand(const at::Tensor& t, const void*& data, int64_t& sb, int64_t& sh, int64_t& sl) {
  data = t.const_data_ptr();
  sb = t.stride(0);
  sh = t.stride(1);
  sl = t.stride(2);
}

Prepared prepare(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                 std::optional<double> scale, bool enable_gqa, const std::optional<at::Tensor>& dropout_seed) {
  // The CUDA kernels take float32, float16 and bfloat16; check_float_dtype below also admits
  // float64, which only the CPU kernels run.
  TORCH_CHECK_TYPE(!q.is_cuda() || q.scalar_type() != at::kDouble, op,
                   ": query must be float32, float16 or bfloat16 on CUDA (float64 runs on the CPU only), got ",
                   q.scalar_type());
  const char* names[] = {"query", "key", "value"};
  const at::Tensor* ts[] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK_VALUE(ts[i]->layout() == at::kStrided, op, ": ", names[i], " must be a dense (strided) tensor");
    TORCH_CHECK_VALUE(ts[i]->dim() >= (enable_gqa ? 3 : 2), op, ": ", names[i], " must have shape (..., ",
                      enable_gqa ? "heads, " : "", i == 0 ? "L" : "S", ", ", i == 2 ? "Ev" : "E", ")",
                      enable_gqa ? " with a head dimension (enable_gqa=True)" : "", ", got a ", ts[i]->dim(),
                      "-D tensor");
  }
  check_float_dtype(op, "query", q);
  check_same(op, "key", k, "query", q);
  check_same(op, "value", v, "query", q);
  const int64_t L = q.size(-2), S = k.size(-2), E = q.size(-1), Ev = v.size(-1);
  TORCH_CHECK_VALUE(k.size(-1) == E, op, ": query and key must have the same head dim (last dimension), got ", E,
                    " for query (shape ", q.sizes(), ") and ", k.size(-1), " for key (shape ", k.sizes(), ")");
  TORCH_CHECK_VALUE(v.size(-2) == S, op, ": key and value must have the same sequence length (dimension -2), got ",
                    S, " for key (shape ", k.sizes(), ") and ", v.size(-2), " for value (shape ", v.sizes(), ")");

  Prepared r;
  int64_t Hq = 1, Hkv = 1;
  if (enable_gqa) {
    Hq = q.size(-3);
    Hkv = k.size(-3);
    TORCH_CHECK_VALUE(v.size(-3) == Hkv, op, ": key and value must have the same number of heads (dimension -3), got ",
                      Hkv, " and ", v.size(-3));
    TORCH_CHECK_VALUE(Hkv > 0 && Hq % Hkv == 0, op,
                      ": enable_gqa=True needs the number of query heads to be a multiple of the number of "
                      "key/value heads, got ", Hq, " query heads and ", Hkv, " key/value heads");
    Shape outer(q.sizes().begin(), q.sizes().end() - 3);
    const bool ok = broadcast_into(outer, k.sizes().slice(0, k.dim() - 3)) &&
                    broadcast_into(outer, v.sizes().slice(0, v.dim() - 3));
    TORCH_CHECK_VALUE(ok, op, ": the batch dimensions of query ", q.sizes(), ", key ", k.sizes(), " and value ",
                      v.sizes(), " (all but the last three) cannot be broadcast together");
    r.batch = outer;
    r.batch.push_back(Hq);
    r.kv_batch = outer;
    r.kv_batch.push_back(Hkv);
  } else {
    Shape batch(q.sizes().begin(), q.sizes().end() - 2);
    const bool ok = broadcast_into(batch, k.sizes().slice(0, k.dim() - 2)) &&
                    broadcast_into(batch, v.sizes().slice(0, v.dim() - 2));
    TORCH_CHECK_VALUE(ok, op, ": the batch dimensions of query ", q.sizes(), ", key ", k.sizes(), " and value ",
                      v.sizes(), " (all but the last two) cannot be broadcast together",
                      " (for grouped-query attention, where key/value have fewer heads, pass enable_gqa=True)");
    r.batch = batch;
    r.kv_batch = batch;
    Hq = Hkv = batch.empty() ? 1 : batch.back();
  }
  r.q = as_4d(q, r.batch, L, E);
  r.k = as_4d(k, r.kv_batch, S, E);
  r.v = as_4d(v, r.kv_batch, S, Ev);

  AttentionParams& p = r.p;
  p.dtype = to_dtype(q.scalar_type());
  p.B = r.q.size(0);
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.L = L;
  p.S = S;
  p.E = E;
  p.Ev = Ev;
  set_operand(r.q, p.query, p.q_sb, p.q_sh, p.q_sl);
  set_operand(r.k, p.key, p.k_sb, p.k_sh, p.k_sl);
  set_operand(r.v, p.value, p.v_sb, p.v_sh, p.v_sl);

  if (attn_mask.has_value() && attn_mask->defined()) {
    const at::Tensor& m = *attn_mask;
    TORCH_CHECK_VALUE(m.layout() == at::kStrided, op, ": attn_mask must be a dense (strided) tensor");
    TORCH_CHECK_VALUE(m.device() == q.device(), op, ": attn_mask is on ", m.device(), " but query is on ",
                      q.device(), "; move them to the same device");
    TORCH_CHECK_TYPE(m.scalar_type() == at::kBool || m.scalar_type() == q.scalar_type(), op,
                     ": attn_mask must be bool or have the query's dtype (", q.scalar_type(), "), got ",
                     m.scalar_type());
    Shape target = r.batch;
    target.push_back(L);
    target.push_back(S);
    bool ok = m.dim() >= 1 && static_cast<size_t>(m.dim()) <= target.size();
    for (int64_t i = 1; ok && i <= m.dim(); ++i) {
      const int64_t ms = m.size(-i), ts = target[target.size() - i];
      ok = ms == ts || ms == 1;
    }
    TORCH_CHECK_VALUE(ok, op, ": attn_mask of shape ", m.sizes(), " cannot be broadcast to the attention shape ",
                      shape_str(target), " (batch..., L, S)");
    at::Tensor mm = m;
    if (mm.size(-1) == 1 && S > 1) {  // broadcast along keys: materialise that dimension only
      Shape s(mm.sizes().begin(), mm.sizes().end());
      s.back() = S;
      mm = mm.expand(s).contiguous();
    }
    r.mask = as_4d(mm, r.batch, L, S);
    p.mask_kind = m.scalar_type() == at::kBool ? AttentionMask::boolean : AttentionMask::additive;
    set_operand(r.mask, p.mask, p.m_sb, p.m_sh, p.m_sl);
  }

  TORCH_CHECK_VALUE(dropout_p >= 0.0 && dropout_p <= 1.0, op, ": dropout_p must be in [0, 1], got ", dropout_p);
  p.dropout_p = dropout_p;
  if (dropout_p > 0.0) {
    TORCH_CHECK_VALUE(dropout_seed.has_value() && dropout_seed->defined(), op,
                      ": dropout_p > 0 needs a dropout_seed (a 0-dim int64 tensor)");
    const at::Tensor& s = *dropout_seed;
    TORCH_CHECK_VALUE(s.numel() == 1 && s.scalar_type() == at::kLong, op,
                      ": dropout_seed must be a one-element int64 tensor, got ", s.scalar_type(), " of shape ",
                      s.sizes());
    p.seed = static_cast<uint64_t>(s.item<int64_t>());
  }
  p.causal = is_causal;
  if (scale.has_value()) {
    p.scale = *scale;
  } else {
    p.scale = E > 0 ? 1.0 / std::sqrt(static_cast<double>(E)) : 1.0;
  }
  p.num_threads = num_threads();
  return r;
}

Shape with_tail(Shape s, std::initializer_list<int64_t> tail) {
  for (int64_t t : tail) s.push_back(t);
  return s;
}

at::ScalarType lse_dtype(const at::Tensor& q) { return q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

std::tuple<at::Tensor, at::Tensor> attention_forward(const AttentionKernel& kernel, const at::Tensor& query,
                                                     const at::Tensor& key, const at::Tensor& value,
                                                     const std::optional<at::Tensor>& attn_mask, double dropout_p,
                                                     bool is_causal, std::optional<double> scale, bool enable_gqa,
                                                     const std::optional<at::Tensor>& dropout_seed) {
  const char* op = "scaled_dot_product_attention";
  Prepared r = prepare(op, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, dropout_seed);
  const AttentionParams& p = r.p;
  at::Tensor out = empty_activation(with_tail(r.batch, {p.L, p.Ev}), query.options());
  at::Tensor lse = at::empty(with_tail(r.batch, {p.L}), query.options().dtype(lse_dtype(query)));
  if (lse.numel() > 0) {
    r.p.output = out.mutable_data_ptr();
    r.p.logsumexp = lse.mutable_data_ptr();
    run_kernel([&] { kernel(r.p); });
  }
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_backward(
    const AttentionKernel& kernel, const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key,
    const at::Tensor& value, const at::Tensor& output, const at::Tensor& logsumexp,
    const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal, std::optional<double> scale,
    bool enable_gqa, const std::optional<at::Tensor>& dropout_seed) {
  const char* op = "scaled_dot_product_attention_backward";
  Prepared r = prepare(op, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, dropout_seed);
  AttentionParams& p = r.p;
  const Shape out_shape = with_tail(r.batch, {p.L, p.Ev});
  const Shape lse_shape = with_tail(r.batch, {p.L});
  check_same(op, "grad_output", grad_output, "query", query);
  check_same(op, "output", output, "query", query);
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(out_shape), op, ": grad_output has shape ",
                    grad_output.sizes(), " but the forward output has shape ", shape_str(out_shape));
  TORCH_CHECK_VALUE(output.sizes() == at::IntArrayRef(out_shape), op, ": output has shape ", output.sizes(),
                    " but the forward output has shape ", shape_str(out_shape));
  TORCH_CHECK_VALUE(logsumexp.device() == query.device(), op, ": logsumexp is on ", logsumexp.device(),
                    " but query is on ", query.device());
  TORCH_CHECK_TYPE(logsumexp.scalar_type() == lse_dtype(query), op, ": logsumexp must be ", lse_dtype(query),
                   ", got ", logsumexp.scalar_type());
  TORCH_CHECK_VALUE(logsumexp.sizes() == at::IntArrayRef(lse_shape), op, ": logsumexp has shape ",
                    logsumexp.sizes(), " but the forward's has shape ", shape_str(lse_shape));

  at::Tensor go = as_4d(grad_output, r.batch, p.L, p.Ev);
  at::Tensor out = output.contiguous();
  at::Tensor lse = logsumexp.contiguous();
  at::Tensor gq = empty_activation(with_tail(r.batch, {p.L, p.E}), query.options());
  at::Tensor gk = empty_activation(with_tail(r.kv_batch, {p.S, p.E}), query.options());
  at::Tensor gv = empty_activation(with_tail(r.kv_batch, {p.S, p.Ev}), query.options());
  if (gq.numel() + gk.numel() + gv.numel() > 0) {
    set_operand(go, p.grad_output, p.go_sb, p.go_sh, p.go_sl);
    p.output = const_cast<void*>(out.const_data_ptr());
    p.logsumexp = const_cast<void*>(lse.const_data_ptr());
    p.grad_query = gq.mutable_data_ptr();
    p.grad_key = gk.mutable_data_ptr();
    p.grad_value = gv.mutable_data_ptr();
    run_kernel([&] { kernel(p); });
  }
  return {gq, gk, gv};
}

at::Tensor attention_dropout_mask(const DropoutMaskKernel& kernel, const at::Tensor& seed, int64_t batch_heads,
                                  int64_t L, int64_t S, double p) {
  const char* op = "attention_dropout_mask";
  TORCH_CHECK_VALUE(seed.numel() == 1 && seed.scalar_type() == at::kLong, op,
                    ": dropout_seed must be a one-element int64 tensor, got ", seed.scalar_type(), " of shape ",
                    seed.sizes());
  TORCH_CHECK_VALUE(batch_heads >= 0 && L >= 0 && S >= 0, op, ": sizes must be non-negative, got batch_heads=",
                    batch_heads, ", L=", L, ", S=", S);
  TORCH_CHECK_VALUE(p >= 0.0 && p <= 1.0, op, ": dropout_p must be in [0, 1], got ", p);
  at::Tensor out = at::empty({batch_heads, L, S}, at::TensorOptions(at::kBool));
  run_kernel([&] {
    kernel(static_cast<uint64_t>(seed.item<int64_t>()), batch_heads, L, S, p,
           reinterpret_cast<uint8_t*>(out.mutable_data_ptr()));
  });
  return out;
}

}  // namespace bigmodel::binding

namespace {

using namespace bigmodel;

// scaled_dot_product_attention = output of the forward op; with dropout, the seed is drawn here
// from torch's default generator (so torch.manual_seed makes it reproducible, and a traced graph
// draws a fresh one on every call).
at::Tensor scaled_dot_product_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                        const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                                        std::optional<double> scale, bool enable_gqa) {
  static auto forward = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("bigmodel::scaled_dot_product_attention_forward", "")
                            .typed<std::tuple<at::Tensor, at::Tensor>(
                                const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const std::optional<at::Tensor>&, double, bool, std::optional<double>, bool,
                                const std::optional<at::Tensor>&)>();
  std::optional<at::Tensor> seed;
  if (dropout_p > 0.0) seed = at::randint(std::numeric_limits<int64_t>::max(), {}, at::TensorOptions(at::kLong));
  return std::get<0>(forward.call(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed));
}

TORCH_LIBRARY_IMPL(bigmodel, CompositeImplicitAutograd, m) {
  m.impl("scaled_dot_product_attention", &scaled_dot_product_attention);
}

TORCH_LIBRARY_IMPL(bigmodel, CPU, m) {
  m.impl("scaled_dot_product_attention_forward", binding::bind(&binding::attention_forward, cpu::attention_forward));
  m.impl("scaled_dot_product_attention_backward", binding::bind(&binding::attention_backward, cpu::attention_backward));
  // The seed is a CPU tensor, so the mask is made on the CPU; callers move it where they need it.
  m.impl("attention_dropout_mask", binding::bind(&binding::attention_dropout_mask, cpu::attention_dropout_mask));
}

}  // namespace
