"""Cython training engine: the loops of numba_engine.py, compiled without the GIL.

``run_batches`` (mini-batch and full batch, matrix products through blas.pxd)
and ``run_online`` (one sample per update: matrix-vector loops, the optimizer step
fused with the gradient), both on hyper[THREADS] threads of their own, take the arguments
numba_engine.py documents and return the same (epochs completed, batch index,
optimizer steps, loss). The scalar math (exp, sqrt, tanh, sigmoid) is
elementwise.pxd's, shared with cython_kernels.pyx; the per-row loss, activation and
optimizer formulas are written out in cython_engine.pxi, as cython_kernels.pyx and
numba_kernels.py compute them (Adam in the parameters' dtype, as numba_engine._adam).
Arguments are trusted apart from their dtypes: fastnn/engine.py builds them.

The code is in cython_engine.pxi; this module is its build for the compiler's
default target, cython_engine_avx2.pyx the same code for CPUs with AVX2 and FMA.
"""

include "cython_engine.pxi"
