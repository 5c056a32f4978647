# Scalar math in the precision of the arrays, shared by the Cython kernels and
# the Cython engine (cimported; inline, so nothing is called across modules).
from cython cimport floating
from libc.math cimport exp, expf, sqrt, sqrtf, tanh, tanhf


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating _sigmoid(floating x) noexcept nogil:
    """Logistic function, 1 / (1 + e) for x >= 0 and e / (1 + e) below, with e = exp(-|x|)."""
    cdef floating e = _exp(-x if x >= 0 else x)
    return (1 if x >= 0 else e) / (1 + e)
