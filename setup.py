"""Build script for bigmodel's compiled extension, ``bigmodel._C``.

One extension is built with torch.utils.cpp_extension and ninja, in C++20:

* the CPU kernels in ``kernels/cpu`` - always. A source that includes ``kernels/cpu/simd.h``
  (directly or through another header; by convention these are the ``*_kernel.cpp`` files) is
  written once against that SIMD layer and compiled once per ISA path (AVX-512, AVX2, generic)
  with that path's flags only, into separate object folders; every other CPU source is compiled
  once with baseline flags and picks a path at run time. No ``-march=native``.
* the CUDA kernels in ``kernels/cuda`` and their torch bindings in ``csrc/cuda`` (every ``.cu``
  and ``.cpp`` found there) - when ``BIGMODEL_CUDA=1``, or by default when the installed torch is a
  CUDA build and nvcc is found. No GPU needs to be visible. A CUDA build that cannot be set up or
  that fails to compile stops the install with what to do (``BIGMODEL_CUDA=0`` builds CPU only).

Environment variables: ``BIGMODEL_CUDA`` (1 forces CUDA on and fails loudly if it cannot be
built, 0 forces it off), ``CUDA_HOME`` (the toolkit root; found from the nvcc on PATH otherwise),
``TORCH_CUDA_ARCH_LIST`` (default ``8.0;9.0``), ``MAX_JOBS`` (parallel compile jobs; default: the
CPUs this process may use), ``BIGMODEL_DEBUG=1`` (-O0 -g; -G for CUDA).

Every object, the per-ISA ones included, is built by one ninja run, so all cores stay busy until
the last object is done (three sequential runs per ISA before the main one left one core idle
through each run's tail). Release builds carry no debug info (-g0), which is a third of the
compile time.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    import torch
except ImportError:  # pragma: no cover - message for people who skip the README
    sys.exit(
        "bigmodel builds against the torch that will run it, so torch must be installed first and\n"
        "the package installed without build isolation:\n"
        "    pip install torch==2.13.0 pybind11 ninja setuptools\n"
        "    pip install --no-build-isolation .\n"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))

def _read_version() -> str:
    # Single source of truth: bigmodel/_version.py (also read by pyproject.toml).
    with open(os.path.join(ROOT, "bigmodel", "_version.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("bigmodel/_version.py has no __version__")


VERSION = _read_version()


def _read_isa_flags() -> dict[str, list[str]]:
    """Per-ISA compiler flags, shared with the C++ test harness (kernels/cpu/isa_flags.txt)."""
    flags = {}
    with open(os.path.join(ROOT, "kernels", "cpu", "isa_flags.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, rest = line.partition(":")
                flags[name.strip()] = rest.split()
    return flags


ISA_FLAGS = _read_isa_flags()


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _isa_paths() -> list[str]:
    return ["avx512", "avx2", "generic"] if _is_x86_64() else ["generic"]


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _has_toolkit(root: str | None) -> bool:
    return bool(root) and os.path.isfile(os.path.join(root, "bin", "nvcc")) and os.path.isfile(
        os.path.join(root, "include", "cuda_runtime.h"))


def _find_cuda_home() -> str | None:
    """The CUDA toolkit root, or None when no nvcc can be found.

    $CUDA_HOME / $CUDA_PATH win when set. Otherwise torch guesses the parent of the `nvcc` on PATH,
    which is wrong when that nvcc is a wrapper script or link outside the toolkit (e.g.
    /usr/local/bin/nvcc -> /usr/local/cuda-13.0/bin/nvcc makes it guess /usr/local), so we resolve
    links and, failing that, ask nvcc where it lives.
    """
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return env
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if _has_toolkit(root):
            return root
        try:  # the driver reports its own folder in a dry run: "#$ _HERE_=/usr/local/cuda-13.0/bin"
            out = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=60)
            for line in (out.stdout + out.stderr).splitlines():
                if line.startswith("#$ _HERE_="):
                    root = os.path.dirname(line.split("=", 1)[1].strip())
                    if _has_toolkit(root):
                        return root
        except (OSError, subprocess.SubprocessError):
            pass
    return "/usr/local/cuda" if _has_toolkit("/usr/local/cuda") else None


def _want_cuda() -> bool:
    """Decide whether to build the CUDA kernels; fail loudly if they were asked for and can't be."""
    flag = os.environ.get("BIGMODEL_CUDA", "").strip().lower()
    if flag in ("0", "false", "off", "no"):
        return False
    if flag not in ("", "1", "true", "on", "yes"):
        sys.exit(f"BIGMODEL_CUDA must be 1 (build the CUDA kernels) or 0 (don't), got {flag!r}")
    requested = flag != ""
    problems = []
    if torch.version.cuda is None:
        problems.append(
            f"the installed torch {torch.__version__} is a CPU-only build "
            "(install a CUDA build first, e.g. `pip install torch==2.14.1`, then rebuild bigmodel)"
        )
    home = _find_cuda_home()
    if home is None:
        problems.append("nvcc was not found (put the CUDA toolkit's bin/ on PATH or set CUDA_HOME to its root)")
    elif not _has_toolkit(home):
        problems.append(f"CUDA_HOME={home} holds no CUDA toolkit (expected bin/nvcc and include/cuda_runtime.h)")
    if problems:
        if requested:
            sys.exit(
                "BIGMODEL_CUDA=1 was set but the CUDA kernels cannot be built:\n  - "
                + "\n  - ".join(problems)
                + "\nFix the above, or unset BIGMODEL_CUDA (or set BIGMODEL_CUDA=0) to build the CPU kernels only."
            )
        if torch.version.cuda is not None:  # a CUDA torch without a toolkit: say why CUDA is skipped
            print("bigmodel: building the CPU kernels only: " + "; ".join(problems), file=sys.stderr)
        return False
    os.environ["CUDA_HOME"] = home  # for torch.utils.cpp_extension, imported below, and nvcc's children
    return True


def _pip_cuda_include_dirs() -> list[str]:
    """Header folders of pip's nvidia-* packages (e.g. nvidia/cu13/include with cusparse.h).

    torch's CUDA headers include cuSPARSE/cuBLAS headers that a pip-installed CUDA torch keeps in
    site-packages rather than in the toolkit, so we add them without asking the user for CPATH.
    """
    dirs = []
    try:
        import nvidia  # namespace package installed alongside CUDA builds of torch
    except ImportError:
        return dirs
    for base in list(getattr(nvidia, "__path__", [])):
        for inc in sorted(glob.glob(os.path.join(base, "*", "include"))):
            if os.path.isdir(inc):
                dirs.append(inc)
    return dirs


def _nvcc_version() -> str:
    try:
        out = subprocess.run(
            [os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"), "--version"],
            capture_output=True, text=True, check=True,
        ).stdout
        # "Cuda compilation tools, release 13.0, V13.0.88" -> "release 13.0, V13.0.88"
        lines = [ln for ln in out.splitlines() if "release" in ln] or out.strip().splitlines()[-1:]
        return lines[0].split("tools,", 1)[-1].strip()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


WITH_CUDA = _want_cuda()
# torch.utils.cpp_extension settles on CUDA_HOME when first imported, so import it only now that
# _want_cuda() has put the toolkit it found in the environment; if something imported it earlier,
# correct its guess.
from torch.utils import cpp_extension  # noqa: E402

if WITH_CUDA:
    cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]
DEBUG = os.environ.get("BIGMODEL_DEBUG", "0") == "1"
if WITH_CUDA:
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

# -g0 overrides the -g that Python's own CFLAGS put in front of ours.
OPT = ["-O0", "-g"] if DEBUG else ["-O3", "-DNDEBUG", "-g0"]
# Ninja's job count: the CPUs we may run on (ninja's own default is that plus two), unless set.
os.environ.setdefault("MAX_JOBS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else os.cpu_count() or 1))
COMMON_CXX = ["-std=c++20", "-fopenmp", "-fvisibility=hidden", "-Wall", "-Wno-unknown-pragmas", *OPT]

def _includes_simd(path: str, seen: set[str] | None = None) -> bool:
    """Whether a CPU source reaches kernels/cpu/simd.h through its quoted includes."""
    seen = set() if seen is None else seen
    if path in seen:
        return False
    seen.add(path)
    with open(path) as f:
        names = [line.split('"')[1] for line in f if line.lstrip().startswith("#include \"")]
    for name in names:
        for base in (os.path.dirname(path), os.path.join(ROOT, "kernels"), os.path.join(ROOT, "kernels", "include")):
            target = os.path.normpath(os.path.join(base, name))
            if os.path.isfile(target):
                if target == os.path.join(ROOT, "kernels", "cpu", "simd.h") or _includes_simd(target, seen):
                    return True
                break
    return False


ALL_CPU_SOURCES = _rel(glob.glob(os.path.join(ROOT, "kernels", "cpu", "**", "*.cpp"), recursive=True))
ISA_KERNEL_SOURCES = [s for s in ALL_CPU_SOURCES if _includes_simd(os.path.join(ROOT, s))]
CPU_SOURCES = [s for s in ALL_CPU_SOURCES if s not in ISA_KERNEL_SOURCES]
CSRC_SOURCES = _rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")))
CUDA_SOURCES = []
if WITH_CUDA:
    # Every .cu under kernels/cuda and every binding under csrc/cuda: a new kernel family needs
    # no change here.
    CUDA_SOURCES = _rel(glob.glob(os.path.join(ROOT, "kernels", "cuda", "**", "*.cu"), recursive=True))
    CUDA_SOURCES += _rel(glob.glob(os.path.join(ROOT, "csrc", "cuda", "**", "*.cpp"), recursive=True))

INCLUDE_DIRS = [os.path.join(ROOT, "kernels", "include"), os.path.join(ROOT, "kernels"), os.path.join(ROOT, "csrc")]



def _build_config_header() -> str:
    """Build facts for bigmodel._C.build_info(), as a generated header (no quoting games in flags)."""
    values = {
        "BIGMODEL_VERSION": VERSION,
        "BIGMODEL_TORCH_VERSION": torch.__version__,
        "BIGMODEL_ISA_PATHS": ",".join(_isa_paths()),
        "BIGMODEL_CUDA_ARCHS": os.environ.get("TORCH_CUDA_ARCH_LIST", "") if WITH_CUDA else "",
        "BIGMODEL_NVCC_VERSION": _nvcc_version() if WITH_CUDA else "",
        "BIGMODEL_BUILD_TYPE": "debug" if DEBUG else "release",
    }
    lines = ["// Generated by setup.py; do not edit.", "#pragma once"]
    lines += [f"#define {k} {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


class _ExtraNinjaObjects:
    """Adds the per-ISA objects to the ninja file torch writes for the main sources, so one ninja
    run builds everything. Each is a `compile` edge of that file with its own flags appended
    (ninja evaluates `post_cflags = $post_cflags ...` in the file's scope), listed before the
    main sources so that ninja starts the longest compiles first."""

    def __init__(self):
        self.edges: list[tuple[str, str, list[str]]] = []  # (object, source, extra flags)
        self._write = getattr(cpp_extension, "_write_ninja_file", None)

    @property
    def available(self) -> bool:
        return self._write is not None

    def __enter__(self):
        def write(path, *args, **kwargs):
            self._write(path, *args, **kwargs)
            with open(path) as f:
                lines = f.read().split("\n")
            first_build = next(i for i, line in enumerate(lines) if line.startswith("build "))
            extra = []
            for obj, src, flags in self.edges:
                extra += [f"build {obj}: compile {src}", f"  post_cflags = $post_cflags {' '.join(flags)}"]
            lines[first_build:first_build] = extra
            _write_if_changed(path, "\n".join(lines))

        cpp_extension._write_ninja_file = write
        return self

    def __exit__(self, *exc):
        cpp_extension._write_ninja_file = self._write


class BuildExt(cpp_extension.BuildExtension):
    """torch's BuildExtension plus per-ISA compilation of the sources that include simd.h.

    Each ISA path's objects go to their own folder, so one source yields three objects whose
    symbols live in different namespaces (see kernels/cpu/simd.h).
    """

    def _isa_edges(self):
        # Slowest first: the AVX-512 path, and within a path the biggest sources.
        temp = os.path.abspath(self.build_temp)
        for isa in _isa_paths():
            for src in sorted(ISA_KERNEL_SOURCES, key=lambda s: -os.path.getsize(os.path.join(ROOT, s))):
                obj = os.path.join(temp, f"isa-{isa}", os.path.splitext(src)[0] + ".o")
                flags = ISA_FLAGS[isa] + [f"-DBIGMODEL_BUILD_{isa.upper()}=1"]
                yield obj, os.path.join(ROOT, src), flags

    def build_extension(self, ext):
        generated = os.path.join(os.path.abspath(self.build_temp), "generated")
        _write_if_changed(os.path.join(generated, "bigmodel_build_config.h"), _build_config_header())
        ext.include_dirs = list(ext.include_dirs) + [generated]
        extra = _ExtraNinjaObjects()
        if not (ISA_KERNEL_SOURCES and extra.available):
            return self._build_isa_objects_separately(ext)
        extra.edges = list(self._isa_edges())
        for obj, _, _ in extra.edges:
            os.makedirs(os.path.dirname(obj), exist_ok=True)
        ext.extra_objects = list(ext.extra_objects or []) + [obj for obj, _, _ in extra.edges]
        # setuptools relinks only when a source or dependency is newer than the library.
        ext.depends = list(ext.depends) + [os.path.join(ROOT, s) for s in ISA_KERNEL_SOURCES]
        with extra:
            super().build_extension(ext)

    def _build_isa_objects_separately(self, ext):
        # A torch without the ninja-file hook: one ninja run per ISA path, then the main one.
        objects = []
        for isa in _isa_paths() if ISA_KERNEL_SOURCES else []:
            objects += self.compiler.compile(
                ISA_KERNEL_SOURCES,
                output_dir=os.path.join(self.build_temp, f"isa-{isa}"),
                macros=[(f"BIGMODEL_BUILD_{isa.upper()}", "1")],
                include_dirs=ext.include_dirs,
                debug=self.debug,
                extra_postargs={"cxx": COMMON_CXX + ISA_FLAGS[isa], "nvcc": []},
                depends=ext.depends,
            )
        ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)

    def build_extensions(self):
        if not WITH_CUDA:
            return super().build_extensions()
        try:
            super().build_extensions()
        except Exception as exc:  # noqa: BLE001 - any failure of a CUDA build gets the same advice
            raise SystemExit(
                f"\nerror: building bigmodel with its CUDA kernels failed: {exc}\n"
                f"  CUDA toolkit: {cpp_extension.CUDA_HOME} ({_nvcc_version()}); torch {torch.__version__} "
                f"(CUDA {torch.version.cuda}); TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}\n"
                "  The compiler output above shows the first error. Check that nvcc's CUDA major version\n"
                "  matches torch's, that TORCH_CUDA_ARCH_LIST names architectures this nvcc supports, and\n"
                "  that the host compiler is one this nvcc accepts.\n"
                "  To build the CPU kernels only, set BIGMODEL_CUDA=0.\n"
            ) from exc


def make_extension():
    sources = CSRC_SOURCES + CPU_SOURCES + CUDA_SOURCES
    defines = [f"-DBIGMODEL_WITH_CUDA={int(WITH_CUDA)}"]
    extra = {"cxx": COMMON_CXX + defines}
    if WITH_CUDA:
        nvcc_flags = ["-std=c++20", "-lineinfo", "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden",
                      *(["-G"] if DEBUG else ["-O3", "-DNDEBUG"])]
        extra["nvcc"] = nvcc_flags + defines
        ext_cls = cpp_extension.CUDAExtension
    else:
        ext_cls = cpp_extension.CppExtension
    depends = glob.glob(os.path.join(ROOT, "kernels", "**", "*.h"), recursive=True)
    depends += glob.glob(os.path.join(ROOT, "kernels", "**", "*.cuh"), recursive=True)
    depends += glob.glob(os.path.join(ROOT, "csrc", "**", "*.h"), recursive=True)
    ext = ext_cls(
        name="bigmodel._C",
        sources=sources,
        include_dirs=list(INCLUDE_DIRS),
        depends=depends,
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
    )
    if WITH_CUDA:
        # After torch's and the toolkit's include folders (CUDAExtension appended those), so the
        # pip packages only supply headers the toolkit lacks and never shadow its own.
        ext.include_dirs += _pip_cuda_include_dirs()
    return ext


if shutil.which("ninja") is None and not any(p.endswith("ninja") for p in os.environ.get("PATH", "").split(":")):
    try:
        import ninja  # noqa: F401 - the pip package puts the binary on PATH inside the venv
    except ImportError:
        print("warning: ninja not found; the build will be slow and serial (pip install ninja)", file=sys.stderr)

class BuildPy(build_py):
    """Also ships benchmarks/suite.toml (the standard suite, kept at the top level as data) inside
    the package, so an installed `bigmodel bench all` finds it."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "bigmodel", "bench", "suite.toml")
        self.mkpath(os.path.dirname(target))
        self.copy_file(os.path.join(ROOT, "benchmarks", "suite.toml"), target)


setup(
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExt.with_options(use_ninja=True), "build_py": BuildPy},
)
