// Run-time ISA detection and selection; see kernels/include/bigmodel/isa.h.
#include "bigmodel/isa.h"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define BIGMODEL_HAVE_CPUID 1
#endif

namespace bigmodel {
namespace {

#ifdef BIGMODEL_HAVE_CPUID
struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool os_ymm = false, os_zmm = false;
};

// XCR0 tells which register states the OS saves on context switch.
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  f.fma = (c >> 12) & 1;
  if (osxsave) {
    const uint64_t xcr0 = read_xcr0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;      // SSE + AVX state
    f.os_zmm = (xcr0 & 0xe6) == 0xe6;    // + opmask, ZMM_Hi256, Hi16_ZMM
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = (b >> 5) & 1;
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
  }
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}
#endif

std::atomic<int> g_active{-1};
std::mutex g_init_mutex;

std::string lower(const char* s) {
  std::string out(s ? s : "");
  for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

std::string supported_list() {
  std::string out;
  for (int i = 2; i >= 0; --i) {
    const Isa isa = static_cast<Isa>(i);
    if (isa_compiled(isa) && isa_supported(isa)) {
      if (!out.empty()) out += ", ";
      out += isa_name(isa);
    }
  }
  return out;
}

void check_runnable(Isa isa) {
  if (!isa_compiled(isa)) {
    throw std::invalid_argument(std::string("BIGMODEL_ISA: the ") + isa_name(isa) +
                                " path is not compiled into this build (available here: " +
                                supported_list() + ")");
  }
  if (!isa_supported(isa)) {
    throw std::invalid_argument(std::string("BIGMODEL_ISA: this CPU cannot run the ") + isa_name(isa) +
                                " path (available here: " + supported_list() + ")");
  }
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::generic: return "generic";
  }
  return "unknown";
}

Isa parse_isa(const char* name) {
  const std::string s = lower(name);
  if (s == "avx512") return Isa::avx512;
  if (s == "avx2") return Isa::avx2;
  if (s == "generic") return Isa::generic;
  throw std::invalid_argument("BIGMODEL_ISA: unknown ISA path '" + std::string(name ? name : "") +
                              "'; expected one of avx512, avx2, generic");
}

bool isa_compiled(Isa isa) {
#ifdef BIGMODEL_HAVE_CPUID
  (void)isa;
  return true;
#else
  return isa == Isa::generic;
#endif
}

bool isa_supported(Isa isa) {
  if (isa == Isa::generic) return true;
#ifdef BIGMODEL_HAVE_CPUID
  const CpuFeatures& f = features();
  const bool avx2 = f.os_ymm && f.avx2 && f.fma;
  if (isa == Isa::avx2) return avx2;
  if (isa == Isa::avx512) return avx2 && f.os_zmm && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
#endif
  return false;
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2}) {
    if (isa_compiled(isa) && isa_supported(isa)) return isa;
  }
  return Isa::generic;
}

Isa active_isa() {
  const int cur = g_active.load(std::memory_order_acquire);
  if (cur >= 0) return static_cast<Isa>(cur);
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (g_active.load(std::memory_order_relaxed) < 0) {
    const char* env = std::getenv("BIGMODEL_ISA");
    Isa isa = best_isa();
    if (env != nullptr && env[0] != '\0') {
      isa = parse_isa(env);
      check_runnable(isa);  // throws; g_active stays unset so the error repeats on the next call
    }
    g_active.store(static_cast<int>(isa), std::memory_order_release);
  }
  return static_cast<Isa>(g_active.load(std::memory_order_relaxed));
}

void set_active_isa(Isa isa) {
  check_runnable(isa);
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

const char* cpu_brand() {
  static const std::string brand = [] {
    std::string s;
#ifdef BIGMODEL_HAVE_CPUID
    unsigned a, b, c, d;
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
      char buf[49] = {0};
      for (unsigned leaf = 0; leaf < 3; ++leaf) {
        __get_cpuid(0x80000002u + leaf, &a, &b, &c, &d);
        std::memcpy(buf + 16 * leaf + 0, &a, 4);
        std::memcpy(buf + 16 * leaf + 4, &b, 4);
        std::memcpy(buf + 16 * leaf + 8, &c, 4);
        std::memcpy(buf + 16 * leaf + 12, &d, 4);
      }
      s = buf;
      const auto first = s.find_first_not_of(' ');
      const auto last = s.find_last_not_of(' ');
      s = first == std::string::npos ? "" : s.substr(first, last - first + 1);
    }
#endif
    return s;
  }();
  return brand.c_str();
}

}  // namespace bigmodel
