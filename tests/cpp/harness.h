// A small framework-free test harness for the kernels in kernels/: a registry of test
// functions, guard-zoned buffers, a deterministic RNG and comparison helpers. Built by
// tests/cpp/CMakeLists.txt with -fsanitize=address,undefined and run once per ISA path.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace bmtest {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

#define BM_TEST(name)                                               \
  static void bm_test_##name();                                     \
  static ::bmtest::Register bm_register_##name(#name, bm_test_##name); \
  static void bm_test_##name()

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define BM_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::ostringstream bm_os_;                                                         \
      bm_os_ << __FILE__ << ":" << __LINE__ << ": check failed: " #cond " " << __VA_ARGS__; \
      throw ::bmtest::Failure(bm_os_.str());                                             \
    }                                                                                    \
  } while (0)

// Counts cases run by the current test, for the report.
inline int64_t& cases_run() {
  static int64_t n = 0;
  return n;
}

// Case counts are sized for CI; BIGMODEL_FUZZ_CASES=<factor> scales every family's count (the
// long run uses e.g. BIGMODEL_FUZZ_CASES=20).
inline int64_t fuzz_cases(int64_t n) {
  const char* env = std::getenv("BIGMODEL_FUZZ_CASES");
  const double f = env && *env ? std::atof(env) : 1.0;
  const int64_t scaled = static_cast<int64_t>(static_cast<double>(n) * f);
  return scaled < 1 ? 1 : scaled;
}

inline std::mt19937_64& rng() {
  static std::mt19937_64 gen(12345);
  return gen;
}
inline int64_t randint(int64_t lo, int64_t hi) {  // inclusive
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng());
}
inline double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng()); }
inline bool coin(double p = 0.5) { return uniform(0, 1) < p; }

// A heap buffer of n elements with guard zones of 64 elements on both sides, filled with a
// canary byte pattern. check() throws if a kernel wrote outside [0, n). ASan's redzones catch
// out-of-bounds reads; the canaries catch writes even in builds without a sanitizer.
template <typename T>
class Buffer {
 public:
  static constexpr int64_t kGuard = 64;
  static constexpr unsigned char kCanary = 0xA5;

  explicit Buffer(int64_t n) : n_(n), storage_((n + 2 * kGuard) * sizeof(T) + 64) {
    std::memset(storage_.data(), kCanary, storage_.size());
    // 64-byte align the payload so aligned and unaligned paths both get exercised by offsets
    uintptr_t base = reinterpret_cast<uintptr_t>(storage_.data()) + kGuard * sizeof(T);
    offset_ = static_cast<int64_t>((64 - base % 64) % 64);
    data_ = reinterpret_cast<T*>(storage_.data() + offset_ + kGuard * sizeof(T));
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return n_; }
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }
  void fill_random(double lo = -1, double hi = 1) {
    for (int64_t i = 0; i < n_; ++i) data_[i] = static_cast<T>(uniform(lo, hi));
  }
  void fill(T v) {
    for (int64_t i = 0; i < n_; ++i) data_[i] = v;
  }
  void check(const char* what) const {
    const unsigned char* lo = reinterpret_cast<const unsigned char*>(data_) - kGuard * sizeof(T);
    const unsigned char* hi = reinterpret_cast<const unsigned char*>(data_ + n_);
    for (size_t i = 0; i < kGuard * sizeof(T); ++i) {
      if (lo[i] != kCanary) throw Failure(std::string(what) + ": write before the start of the buffer");
      if (hi[i] != kCanary) throw Failure(std::string(what) + ": write past the end of the buffer");
    }
  }

 private:
  int64_t n_;
  std::vector<unsigned char> storage_;
  int64_t offset_ = 0;
  T* data_ = nullptr;
};

// |a - b| <= atol + rtol * |b|, NaN matching NaN.
inline bool close(double a, double b, double rtol, double atol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

template <typename T>
void expect_close(const T* got, const std::vector<double>& want, double rtol, double atol, const std::string& what) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (!close(static_cast<double>(got[i]), want[i], rtol, atol)) {
      std::ostringstream os;
      os << what << ": element " << i << " is " << static_cast<double>(got[i]) << ", expected " << want[i];
      throw Failure(os.str());
    }
  }
}

template <typename T>
constexpr double tolerance() {
  return sizeof(T) == 4 ? 2e-5 : 1e-12;
}

}  // namespace bmtest
