#!/usr/bin/env bash
# CUDA compile-and-link check; needs nvcc, not a GPU. .ci/run calls it where nvcc exists.
#
# In a fresh virtualenv: installs torch 2.14.1 (a CUDA 13.0 build) and the build dependencies,
# installs bigmodel from a copy of this checkout exactly as the README does
# (`pip install --no-build-isolation .`) with BIGMODEL_CUDA=1 TORCH_CUDA_ARCH_LIST="8.0;9.0",
# imports it from outside the source tree and asserts that every op has a CUDA kernel (but the
# composites and the ops build_info() marks cpu_only) and that the CUDA archs are 8.0 and 9.0. If a GPU happens
# to be visible, also runs the CUDA tests.
# Prints the time of each step and the total.
#
#   bash .ci/cuda_build_check.sh
#
# Environment: MAX_JOBS (default 2); PYTHON (default python3); CUDA_CHECK_VENV=DIR to keep the
# virtualenv in DIR and reuse it on the next run (default: a temporary one, removed at exit).
set -euo pipefail

t0=$(date +%s)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bigmodel-cuda-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
VENV="${CUDA_CHECK_VENV:-$WORK/venv}"
export MAX_JOBS="${MAX_JOBS:-2}"

step() { echo "== cuda_build_check: $* [$(($(date +%s) - t0)) s]"; }

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  echo "cuda_build_check: nvcc not found (put the CUDA toolkit on PATH or set CUDA_HOME)" >&2
  exit 1
fi

step "virtualenv and torch==2.14.1 in $VENV"
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "torch==2.14.1" setuptools wheel pybind11 ninja numpy typer rich
t_venv=$(date +%s)

step "bigmodel: pip install --no-build-isolation . (BIGMODEL_CUDA=1, TORCH_CUDA_ARCH_LIST=8.0;9.0, MAX_JOBS=$MAX_JOBS)"
mkdir "$WORK/src"
tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude='*.so' --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$WORK/src" -xf -
if ! (cd "$WORK/src" && BIGMODEL_CUDA=1 TORCH_CUDA_ARCH_LIST="8.0;9.0" \
      "$VENV/bin/python" -m pip install -v --no-build-isolation . >"$WORK/build.log" 2>&1); then
  tail -n 80 "$WORK/build.log"
  echo "cuda_build_check: FAILED: the CUDA build did not install (log above)" >&2
  exit 1
fi
t_build=$(date +%s)

step "import from outside the source tree and check the CUDA kernels"
(cd "$WORK" && "$VENV/bin/python" - "$VENV") <<'EOF'
import os
import sys

import bigmodel

venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(bigmodel.__file__).startswith(venv), f"imported {bigmodel.__file__}, not the installed copy"
info = bigmodel.build_info()
assert info["cuda_compiled"], "bigmodel was built without its CUDA kernels"
assert info["ops"], "no bigmodel ops are registered"
missing = [op["name"] for op in info["ops"]
           if not {"cuda", "composite"} & set(op["backends"]) and not op["cpu_only"]]
assert not missing, f"ops without a CUDA kernel: {', '.join(missing)}"
assert info["cuda_archs"] == ["8.0", "9.0"], f"CUDA archs {info['cuda_archs']}, expected ['8.0', '9.0']"
print(f"bigmodel {info['version']} for torch {info['torch_built_against']}, nvcc {info['nvcc']}, "
      f"archs {', '.join(info['cuda_archs'])}")
for op in info["ops"]:
    print(f"  {op['name']}: {', '.join(op['backends'])}")
EOF

if "$VENV/bin/python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  step "a GPU is visible: CUDA tests"
  "$VENV/bin/python" -m pip install -q pytest expecttest hypothesis
  # pytest (not python -m pytest) from the copy, so the installed bigmodel is the one imported.
  (cd "$WORK/src" && "$VENV/bin/pytest" -q -m cuda tests)
fi

t_checks=$(date +%s)
step "removing $WORK"
rm -rf "$WORK"  # a 5 GB virtualenv: removing it is part of the cost
t_end=$(date +%s)
echo "cuda_build_check: OK in $((t_end - t0)) s (virtualenv + torch $((t_venv - t0)) s," \
  "build + install $((t_build - t_venv)) s, checks $((t_checks - t_build)) s, cleanup $((t_end - t_checks)) s)"
