"""Builds the framework-free C++ kernel tests (tests/cpp) with AddressSanitizer and
UndefinedBehaviorSanitizer and runs them once per ISA path through CTest."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/, which holds cpp/


@pytest.fixture(scope="module")
def cpp_build(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed: the C++ kernel harness cannot be built")
    build = tmp_path_factory.mktemp("cpp-tests")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", os.path.join(TESTS, "cpp"), "-B", str(build), *gen], check=True,
                   capture_output=True, text=True)
    r = subprocess.run(["cmake", "--build", str(build), "-j", os.environ.get("MAX_JOBS", "2")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"building the C++ kernel tests failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return build


FAMILIES = ("pool", "gemm", "conv", "lstm", "attention")


def test_kernel_harness_under_sanitizers(cpp_build):
    # -V: the per-test case counts go to pytest's captured output (shown with -rA / on failure)
    r = subprocess.run(["ctest", "--test-dir", str(cpp_build), "--output-on-failure", "-V"], capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert "100% tests passed" in r.stdout
    # every ISA path ran (or was reported as one this CPU cannot run)
    assert "kernels_generic" in r.stdout
    print("\n".join(line for line in r.stdout.splitlines() if "PASS" in line or "ISA path" in line
                     or "random cases" in line or "SKIPPED" in line))
    # every family ran its random cases on every path that was not skipped
    paths = r.stdout.count("ISA path:")
    assert paths >= 1
    for family in FAMILIES:
        assert len(re.findall(rf"PASS {family}_\w*random_f32 ", r.stdout)) >= paths, f"{family}: random cases missing"
    assert "FAIL " not in r.stdout and "ERROR: AddressSanitizer" not in r.stdout and "runtime error:" not in r.stdout
