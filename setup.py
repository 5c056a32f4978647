"""Build the Cython kernels (everything else is in pyproject.toml).

-O3 by default, without errno and trapping semantics for math functions
(the kernels read neither), which lets gcc vectorise loops calling sqrt.
Set FASTNN_MARCH_NATIVE=1 at build time to add -march=native (faster on the
build machine, not portable to older CPUs).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
if os.environ.get("FASTNN_MARCH_NATIVE") == "1":
    compile_args.append("-march=native")

extensions = [
    Extension(
        f"fastnn.kernels.{name}",
        [f"kernels/{name}.pyx"],
        extra_compile_args=compile_args,
        extra_link_args=["-fopenmp"],
    )
    for name in ("cython_kernels", "cython_engine")
]

setup(
    ext_modules=cythonize(
        extensions,
        # kernels/ is installed as fastnn.kernels, a package path Cython cannot
        # see: put it on the search path so `cimport blas` finds kernels/blas.pxd.
        include_path=["kernels"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
    )
)
