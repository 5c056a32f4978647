"""Cython training engine: the loops of numba_engine.py, compiled without the GIL.

``run_batches`` (mini-batch and full batch, matrix products through blas.pxd)
and ``run_online`` (one sample per update: matrix-vector loops, the optimizer step
fused with the gradient), both on run.threads threads of their own (one thread runs
the same loop), train the stack of models in the bundles kernels/abi.py documents one
model after another and return None. Every activation, loss, metric and
optimizer formula is a point function of scalar.pxd, shared with cython_kernels.pyx
(Adam in the parameters' dtype, with one division per parameter).
Arguments are trusted apart from their dtypes: fastnn/engine.py builds them.

The code is in cython_engine.pxi and the files it includes; this module is its build
for the compiler's default target, cython_engine_avx2.pyx the same code for CPUs with
AVX2 and FMA.
"""

include "cython_engine.pxi"
