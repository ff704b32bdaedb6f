// The CPU GEMM engine's entry points as a table that another extension can call through:
// bigmodel._C exports one as the capsule `bigmodel._C.gemm_engine`. The test-only epilogue op
// (csrc/test_ops/gemm_epilogue.cpp) uses it, so that it runs the very engine, and ISA choice, of
// the installed library rather than a second copy.
#pragma once

#include <cstdint>

#include "bigmodel/gemm.h"

namespace bigmodel {

struct GemmEngine {
  // The layout the table was built with; a caller compiled from other headers must refuse it.
  int32_t abi = 1;
  int32_t params_bytes = static_cast<int32_t>(sizeof(GemmParams));
  void (*gemm)(const GemmParams&) = nullptr;
  int64_t (*scratch_bytes)(const GemmParams&) = nullptr;
  void (*single_thread)(const GemmParams&, void* scratch, int64_t scratch_bytes) = nullptr;
};

inline constexpr char kGemmEngineCapsule[] = "bigmodel._C.gemm_engine";

}  // namespace bigmodel
