# Cython declarations of kernels/abi.py: the same codes, columns and hyper-parameter
# record (tests/kernels/test_abi.py holds them to abi.py).
from libc.stdint cimport int64_t

cdef enum:
    IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH, STEP
cdef enum:
    CROSS_ENTROPY, CROSS_ENTROPY_SOFT, MSE, BCE
cdef enum:
    SGD, ADAM
cdef enum:
    W_OFFSET, N_IN, N_OUT, ACTIVATION, IN_OFFSET, OUT_OFFSET

# abi.HYPER, field for field.
cdef packed struct Hyper:
    double lr
    double momentum
    double weight_decay
    double beta1
    double beta2
    double eps
    double clip_norm
    int64_t nesterov
    int64_t decoupled
