// bigmodel._C: the Python module. Loading it registers the operators (TORCH_LIBRARY blocks in
// the other translation units); the functions here report what was built and pick ISA paths.
#include <ATen/core/dispatch/Dispatcher.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bigmodel/gemm.h"
#include "bigmodel/isa.h"
#include "bigmodel_build_config.h"
#include "gemm_engine.h"
#include "registration.h"

namespace py = pybind11;

namespace {

// Ops in the bigmodel namespace with the backends that have kernels for them, and whether they
// are CPU-only by design.
py::list registered_ops() {
  std::vector<std::string> names;
  for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind("bigmodel::", 0) == 0) names.push_back(name.name);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  py::list out;
  for (const auto& n : names) {
    auto op = c10::Dispatcher::singleton().findOp(c10::OperatorName(n, ""));
    if (!op) continue;
    py::list backends;
    for (auto [key, label] : {std::pair{c10::DispatchKey::CPU, "cpu"}, std::pair{c10::DispatchKey::CUDA, "cuda"},
                              std::pair{c10::DispatchKey::CompositeImplicitAutograd, "composite"}}) {
      if (op->hasKernelForDispatchKey(key)) backends.append(label);
    }
    py::dict d;
    const std::string short_name = n.substr(std::string("bigmodel::").size());
    d["name"] = short_name;
    d["backends"] = backends;
    d["cpu_only"] = bigmodel::binding::is_cpu_only_op(short_name);
    out.append(d);
  }
  return out;
}

py::list isa_list(bool only_runnable) {
  py::list out;
  for (auto isa : {bigmodel::Isa::avx512, bigmodel::Isa::avx2, bigmodel::Isa::generic}) {
    if (bigmodel::isa_compiled(isa) && (!only_runnable || bigmodel::isa_supported(isa)))
      out.append(bigmodel::isa_name(isa));
  }
  return out;
}

py::dict build_info() {
  py::dict d;
  d["version"] = BIGMODEL_VERSION;
  d["torch_built_against"] = BIGMODEL_TORCH_VERSION;
  d["build_type"] = BIGMODEL_BUILD_TYPE;
  d["compiler"] = __VERSION__;
  d["isa_compiled"] = isa_list(false);
  d["isa_supported"] = isa_list(true);
  d["isa_best"] = bigmodel::isa_name(bigmodel::best_isa());
  try {
    d["isa_active"] = bigmodel::isa_name(bigmodel::active_isa());
  } catch (const std::exception& e) {
    d["isa_active"] = std::string("error: ") + e.what();
  }
  d["cpu"] = bigmodel::cpu_brand();
  d["cuda_compiled"] = static_cast<bool>(BIGMODEL_WITH_CUDA);
  py::list archs;
  std::string a = BIGMODEL_CUDA_ARCHS;
  size_t start = 0;
  while (start < a.size()) {
    size_t end = a.find_first_of(";, ", start);
    if (end == std::string::npos) end = a.size();
    if (end > start) archs.append(a.substr(start, end - start));
    start = end + 1;
  }
  d["cuda_archs"] = archs;
  d["nvcc"] = BIGMODEL_NVCC_VERSION;
  d["ops"] = registered_ops();
  return d;
}

bigmodel::DType gemm_dtype(const std::string& name) {
  if (name == "float32") return bigmodel::DType::f32;
  if (name == "float64") return bigmodel::DType::f64;
  throw py::value_error("dtype must be 'float32' or 'float64', got '" + name + "'");
}

py::dict gemm_blocking(const std::string& dtype) {
  const bigmodel::GemmBlocking b = bigmodel::cpu::gemm_blocking(gemm_dtype(dtype));
  py::dict d;
  d["MR"] = b.MR;
  d["NR"] = b.NR;
  d["MC"] = b.MC;
  d["KC"] = b.KC;
  d["NC"] = b.NC;
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "bigmodel's compiled kernels; the operators are reachable as torch.ops.bigmodel.*";
  m.def("build_info", &build_info, "What was built: version, torch, ISA paths, CUDA, and the registered ops.");
  m.def("active_isa", [] { return std::string(bigmodel::isa_name(bigmodel::active_isa())); },
        "The CPU path kernels dispatch to now (raises ValueError if BIGMODEL_ISA asks for one that cannot run).");
  m.def("set_isa", [](const std::string& name) { bigmodel::set_active_isa(bigmodel::parse_isa(name.c_str())); },
        py::arg("name"), "Force a CPU path ('avx512', 'avx2' or 'generic') for the whole process.");
  m.def("isa_available", [] { return isa_list(true); }, "CPU paths compiled in and runnable on this CPU, best first.");
  m.def("gemm_blocking", &gemm_blocking, py::arg("dtype") = "float32",
        "The GEMM block sizes (MR, NR, MC, KC, NC) of the active CPU path for 'float32' or 'float64'.");
  m.def("gemm_packed_nbytes",
        [](const std::string& dtype, const std::string& side, int64_t outer, int64_t k) {
          if (side != "a" && side != "b") throw py::value_error("side must be 'a' or 'b', got '" + side + "'");
          try {
            return 64 + bigmodel::cpu::gemm_packed_bytes(gemm_dtype(dtype),
                                                         side == "a" ? bigmodel::GemmSide::a : bigmodel::GemmSide::b,
                                                         outer, k);
          } catch (const std::invalid_argument& e) {
            throw py::value_error(e.what());
          }
        },
        py::arg("dtype"), py::arg("side"), py::arg("outer"), py::arg("k"),
        "Size in bytes of a gemm_pack buffer (header included) on the active CPU path.");
  m.def("fma_peak_gflops",
        [](int threads, double seconds) {
          py::gil_scoped_release release;
          return bigmodel::cpu::fma_peak_gflops(threads, seconds);
        },
        py::arg("threads"), py::arg("seconds") = 0.5,
        "fp32 FMA throughput of the active CPU path with `threads` threads, in GFLOP/s (a register-only loop).");
  static const bigmodel::GemmEngine engine{.gemm = bigmodel::cpu::gemm,
                                           .scratch_bytes = bigmodel::cpu::gemm_scratch_bytes,
                                           .single_thread = bigmodel::cpu::gemm_single_thread};
  m.attr("gemm_engine") = py::capsule(&engine, bigmodel::kGemmEngineCapsule);
}
