// Run-time dispatch from a plain entry point to the per-ISA copies of a kernel.
//
//   BIGMODEL_ISA_DECLARE(void, max_pool2d_forward, (const Pool2dParams&))
//   void max_pool2d_forward(const Pool2dParams& p) { BIGMODEL_ISA_CALL(max_pool2d_forward, p); }
//
// declares bigmodel::cpu::{avx512,avx2,generic}::max_pool2d_forward (defined by the *_kernel.cpp
// compiled for each path) and jumps to the one active_isa() names.
#pragma once

#include "bigmodel/isa.h"

#if defined(__x86_64__) || defined(_M_X64)
#define BIGMODEL_ISA_DECLARE(ret, name, args) \
  namespace avx512 {                          \
  ret name args;                              \
  }                                           \
  namespace avx2 {                            \
  ret name args;                              \
  }                                           \
  namespace generic {                         \
  ret name args;                              \
  }
#define BIGMODEL_ISA_CALL(name, ...)                                    \
  switch (::bigmodel::active_isa()) {                                   \
    case ::bigmodel::Isa::avx512: return avx512::name(__VA_ARGS__);     \
    case ::bigmodel::Isa::avx2: return avx2::name(__VA_ARGS__);         \
    case ::bigmodel::Isa::generic: break;                               \
  }                                                                     \
  return generic::name(__VA_ARGS__)
#else
#define BIGMODEL_ISA_DECLARE(ret, name, args) \
  namespace generic {                         \
  ret name args;                              \
  }
#define BIGMODEL_ISA_CALL(name, ...) \
  (void)::bigmodel::active_isa();    \
  return generic::name(__VA_ARGS__)
#endif
