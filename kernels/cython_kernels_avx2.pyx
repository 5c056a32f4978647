"""The Cython kernels (cython_kernels.pxi, documented in cython_kernels.pyx), compiled
with AVX2 and FMA: 8 float32 or 4 float64 lanes instead of SSE2's 4 and 2 in every
elementwise loop (Adam's step ~1.8x faster). fastnn.kernels imports it instead of
cython_kernels where the CPU has both.
"""

include "cython_kernels.pxi"
