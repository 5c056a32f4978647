"""Arrays whose data starts on a cache line (64 bytes, one AVX-512 register).

numpy aligns its arrays to 16 bytes, so a model's buffers start wherever the allocator
put them: a matrix product over rows that start mid-line loads each vector across two
lines. fastnn allocates the buffers it trains on (parameters, gradients, optimizer state,
the engine's workspaces) here: a 1 x 784 x 256 float32 product took 11 us on a weight
matrix at 16 bytes past a line and 5 us on one at a line (Intel Xeon, AVX-512), and which
of the two a run got depended on the allocator. Only the start is aligned: a layer's W
starts where the previous layers' parameters end, and a stack's row k at k * P elements.
"""
import math

import numpy as np

ALIGNMENT = 64


def zeros(shape, dtype):
    """np.zeros(shape, dtype) with its data on an ALIGNMENT-byte boundary (a view of a
    slightly larger buffer, zeroed as np.zeros zeroes: page by page on first touch)."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.zeros(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def copy(a):
    """An aligned C-contiguous copy of array a."""
    out = zeros(a.shape, a.dtype)
    out[...] = a
    return out
