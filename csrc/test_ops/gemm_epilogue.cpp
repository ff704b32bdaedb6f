// Test-only op, not part of bigmodel._C: the GEMM epilogue contract made observable from Python.
// tests/conftest.py builds this file into its own extension (torch.utils.cpp_extension.load)
// and calls init(bigmodel._C.gemm_engine), so the op runs bigmodel._C's own GEMM engine on its
// active ISA path.
//
//   bigmodel_test::gemm_epilogue(c, a, b, bias, bias_kind, activation, alpha, beta, single_thread)
//     c = relu?(alpha * a @ b + beta * c + bias) in place through the epilogue, with a tile
//     callback that counts how often each element was reported (coverage) and what value it had
//     then (seen); single_thread uses gemm_single_thread with caller scratch.
#include <ATen/ops/zeros.h>
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "gemm_checks.h"
#include "gemm_engine.h"

namespace py = pybind11;

namespace bigmodel::binding {
namespace {

const GemmEngine* engine = nullptr;

template <typename T>
struct CoverageCtx {
  int32_t* coverage;  // M x N, contiguous
  T* seen;            // M x N, contiguous: the value each element had when its tile was reported
  int64_t N;
};

template <typename T>
void record_tile(void* ctx, void* c, int64_t rs_c, int64_t cs_c, int64_t row0, int64_t col0, int64_t rows,
                 int64_t cols) {
  auto* k = static_cast<CoverageCtx<T>*>(ctx);
  const T* tile = static_cast<const T*>(c);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      k->coverage[(row0 + i) * k->N + col0 + j] += 1;
      k->seen[(row0 + i) * k->N + col0 + j] = tile[i * rs_c + j * cs_c];
    }
}

std::tuple<at::Tensor, at::Tensor> gemm_epilogue(at::Tensor& c, const at::Tensor& a, const at::Tensor& b,
                                                 const std::optional<at::Tensor>& bias, c10::string_view bias_kind,
                                                 c10::string_view activation, double alpha, double beta,
                                                 bool single_thread) {
  const char* op = "gemm_epilogue";
  TORCH_CHECK(engine != nullptr, op, ": call init(bigmodel._C.gemm_engine) first");
  GemmParams p = inplace_params(op, c, a, b, alpha, beta);
  const int64_t M = p.M, N = p.N;
  at::Tensor bias_c;
  if (bias_kind == "row" || bias_kind == "col") {
    TORCH_CHECK_VALUE(bias.has_value(), op, ": bias_kind '", std::string(bias_kind), "' needs a bias");
    check_same(op, "bias", *bias, "a", a);
    const int64_t want = bias_kind == "row" ? M : N;
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == want, op, ": bias must have shape [", want, "], got ",
                      bias->sizes());
    bias_c = bias->contiguous();
    p.epilogue.bias_kind = bias_kind == "row" ? GemmBias::per_row : GemmBias::per_col;
    p.epilogue.bias = bias_c.const_data_ptr();
  } else {
    TORCH_CHECK_VALUE(bias_kind == "none", op, ": bias_kind must be 'none', 'row' or 'col'");
  }
  TORCH_CHECK_VALUE(activation == "none" || activation == "relu", op, ": activation must be 'none' or 'relu'");
  p.epilogue.activation = activation == "relu" ? GemmActivation::relu : GemmActivation::none;
  at::Tensor coverage = at::zeros({M, N}, a.options().dtype(at::kInt));
  at::Tensor seen = at::zeros({M, N}, c.options().memory_format(at::MemoryFormat::Contiguous));
  CoverageCtx<float> cf{coverage.mutable_data_ptr<int32_t>(), nullptr, N};
  CoverageCtx<double> cd{coverage.mutable_data_ptr<int32_t>(), nullptr, N};
  if (p.dtype == DType::f64) {
    cd.seen = seen.mutable_data_ptr<double>();
    p.epilogue.callback = &record_tile<double>;
    p.epilogue.callback_ctx = &cd;
  } else {
    cf.seen = seen.mutable_data_ptr<float>();
    p.epilogue.callback = &record_tile<float>;
    p.epilogue.callback_ctx = &cf;
  }
  run_kernel([&] {
    if (single_thread) {
      // Sized before any pointer is known, as callers with their own parallel region do.
      GemmParams shape_only = p;
      shape_only.a.data = shape_only.b.data = nullptr;
      shape_only.c = nullptr;
      shape_only.epilogue = GemmEpilogue{};
      const int64_t bytes = engine->scratch_bytes(shape_only);
      std::vector<char> scratch(static_cast<size_t>(bytes));
      engine->single_thread(p, scratch.data(), bytes);
    } else {
      engine->gemm(p);
    }
  });
  return {coverage, seen};
}

}  // namespace
}  // namespace bigmodel::binding

TORCH_LIBRARY(bigmodel_test, m) {
  m.def("gemm_epilogue(Tensor(a!) c, Tensor a, Tensor b, Tensor? bias, str bias_kind, str activation, "
        "float alpha, float beta, bool single_thread) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(bigmodel_test, CPU, m) { m.impl("gemm_epilogue", &bigmodel::binding::gemm_epilogue); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def(
      "init",
      [](py::capsule capsule) {
        if (std::string(capsule.name()) != bigmodel::kGemmEngineCapsule)
          throw py::value_error("init: expected the capsule bigmodel._C.gemm_engine");
        const auto* e = capsule.get_pointer<bigmodel::GemmEngine>();
        const bigmodel::GemmEngine expected;
        if (e->abi != expected.abi || e->params_bytes != expected.params_bytes)
          throw py::value_error("init: bigmodel._C was built from other GEMM headers than this test extension");
        bigmodel::binding::engine = e;
      },
      py::arg("gemm_engine"), "Use bigmodel._C's GEMM engine (the capsule bigmodel._C.gemm_engine).");
}
