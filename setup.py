"""Build the Cython kernels (everything else is in pyproject.toml).

-O3 by default, without errno and trapping semantics for math functions
(the kernels read neither), which lets gcc vectorise loops calling sqrt.
Set FASTNN_MARCH_NATIVE=1 at build time to add -march=native (faster on the
build machine, not portable to older CPUs). Set FASTNN_CYTHON_CHECKS=1 to build
with bounds and wraparound checks on every memoryview index (slower; an index out
of bounds then raises IndexError, reported as an unraisable exception inside the
nogil kernels): .ci/cython-checks runs the test suite on such a build.
"""
import os
import platform

from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
if os.environ.get("FASTNN_MARCH_NATIVE") == "1":
    compile_args.append("-march=native")
# Kernels and engine may sum in any order (as numba_engine's fastmath dot does), which lets
# gcc vectorise their reductions; both compile the point functions of scalar.pxd with the
# same flags, so that the per-module path and the engine agree to the bit (a test holds them
# to it). Both are built a second time for AVX2 + FMA on x86-64, loaded instead where the
# CPU has them (fastnn.kernels.import_build); gcc contracts a * b + c into FMAs there, which
# the tiny online nets need (without it the 2-5-5-5-2 net trained 0.84x as fast).
compile_args += ["-fassociative-math", "-fno-signed-zeros"]
x86 = platform.machine().lower() in ("x86_64", "amd64")
if x86:
    # Fixed-size memsets up to 256 bytes as unrolled stores, not `rep stosq`: a def kernel
    # zeroes a 208-byte memoryview slice per fused specialisation on entry, and four
    # `rep stosq` of those took 28 ns of a 450 ns activation_forward call (Intel Xeon).
    compile_args += ["-mmemset-strategy=unrolled_loop:256:noalign,libcall:-1:noalign"]
builds = {"cython_kernels": compile_args, "cython_engine": compile_args}
avx2_args = compile_args + ["-mavx2", "-mfma"]
if x86:
    builds["cython_kernels_avx2"] = avx2_args
    builds["cython_engine_avx2"] = avx2_args
    # bf16 products (kernels/bf16_gemm.h): its AVX-512 functions carry target attributes,
    # so the module builds for any x86-64 and checks the CPU before it is used.
    builds["bf16"] = compile_args
headers = {"bf16": ["kernels/bf16_gemm.h"]}

checks = os.environ.get("FASTNN_CYTHON_CHECKS") == "1"

extensions = [
    Extension(
        f"fastnn.kernels.{name}",
        [f"kernels/{name}.pyx"],
        include_dirs=["kernels"],
        depends=headers.get(name, []),
        extra_compile_args=args,
        extra_link_args=["-fopenmp"],
    )
    for name, args in builds.items()
]

setup(
    ext_modules=cythonize(
        extensions,
        # kernels/ is installed as fastnn.kernels, a package path Cython cannot
        # see: put it on the search path so `cimport blas` finds kernels/blas.pxd.
        include_path=["kernels"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": checks,
            "wraparound": checks,
            "initializedcheck": checks,
            "cdivision": True,
        },
    )
)
