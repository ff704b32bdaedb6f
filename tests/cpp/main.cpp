// Runs the registered kernel tests: `kernel_tests [substring]`. Honors BIGMODEL_ISA (ctest runs
// the binary once per path); a path this CPU cannot run is reported as skipped, not failed.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>

#include "bigmodel/isa.h"
#include "harness.h"

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : "";
  const char* env = std::getenv("BIGMODEL_ISA");
  if (env && *env) {
    try {
      const bigmodel::Isa isa = bigmodel::parse_isa(env);
      if (!bigmodel::isa_supported(isa)) {
        std::printf("SKIPPED: this CPU cannot run the %s path\n", env);
        return 0;
      }
    } catch (const std::exception& e) {
      std::printf("error: %s\n", e.what());
      return 2;
    }
  }
  std::printf("ISA path: %s (best here: %s)\n", bigmodel::isa_name(bigmodel::active_isa()),
              bigmodel::isa_name(bigmodel::best_isa()));
  int passed = 0, failed = 0;
  int64_t total_cases = 0;
  for (const auto& t : bmtest::registry()) {
    if (*filter && !std::strstr(t.name, filter)) continue;
    bmtest::cases_run() = 0;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      t.fn();
      ++passed;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("PASS %-40s %6lld cases  %.2fs\n", t.name, static_cast<long long>(bmtest::cases_run()), s);
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %-40s after %lld cases: %s\n", t.name, static_cast<long long>(bmtest::cases_run()), e.what());
    }
    total_cases += bmtest::cases_run();
    std::fflush(stdout);
  }
  std::printf("%lld random cases\n", static_cast<long long>(total_cases));
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
