"""Cython kernels: the NumPy reference (reference.py) as typed loops without the GIL.

Each kernel is a ``def`` function with the reference's signature that picks
the float32 or float64 specialisation of a fused-type implementation; matrix
products go to BLAS through blas.pxd. Arguments are trusted apart from their
dtypes: shapes are checked in contract.py.

The loops are serial: on top of multithreaded BLAS, OpenMP threads waiting
for work slow the matrix products down far more than they speed the loops up.

The code is in cython_kernels.pxi; this module is its build for the compiler's default
target, cython_kernels_avx2.pyx the same code for CPUs with AVX2 and FMA.
"""

include "cython_kernels.pxi"


cdef extern from *:
    """
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    static int fastnn_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    static int fastnn_cpu_has_avx2(void) { return 0; }
    #endif
    """
    int fastnn_cpu_has_avx2() noexcept nogil


def cpu_has_avx2():
    """Whether this CPU (and the operating system, which saves its registers) has AVX2 and
    FMA, which the _avx2 builds need: the CPU's own answer (cpuid), read by the compiler's
    runtime; False off x86. Only in this build, the one that runs on any CPU."""
    return bool(fastnn_cpu_has_avx2())
