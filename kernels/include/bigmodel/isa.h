// Run-time choice of the CPU code path.
//
// Every kernel written against kernels/cpu/simd.h is compiled three times (AVX-512, AVX2,
// generic), each into its own namespace (bigmodel::cpu::avx512, ::avx2, ::generic). The entry
// points in kernels/cpu/*.cpp call active_isa() and jump to one of them. The choice is the best
// path this CPU and OS support, unless BIGMODEL_ISA names another or set_active_isa() is called.
#pragma once

#include <cstdint>

namespace bigmodel {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);

// Parses "avx512" / "avx2" / "generic" (case-insensitive). Throws std::invalid_argument naming
// the accepted values otherwise.
Isa parse_isa(const char* name);

// The path was compiled into this build (x86-64 builds carry all three; others only generic).
bool isa_compiled(Isa isa);

// This CPU and OS can execute the path (cpuid feature bits plus XCR0 register-state support).
bool isa_supported(Isa isa);

// The best path that is both compiled and supported.
Isa best_isa();

// The path kernels dispatch to. On first use it is initialised from BIGMODEL_ISA if that is
// set; an unknown, uncompiled or unsupported request throws std::invalid_argument (and keeps
// throwing until the variable is fixed or set_active_isa() is called).
Isa active_isa();

// Forces a path for the whole process. Throws std::invalid_argument if it cannot run here.
void set_active_isa(Isa isa);

// CPU model string from cpuid's brand leaves ("" where unavailable).
const char* cpu_brand();

}  // namespace bigmodel
