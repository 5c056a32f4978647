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
