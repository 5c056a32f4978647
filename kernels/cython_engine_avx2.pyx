"""The Cython training engine (cython_engine.pxi, documented in cython_engine.pyx),
compiled with AVX2 and FMA: 8 float32 lanes instead of SSE2's 4 in every elementwise
loop. fastnn/engine.py imports it instead of cython_engine where the CPU has both.
"""

include "cython_engine.pxi"
