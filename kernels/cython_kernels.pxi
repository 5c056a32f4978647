# The Cython kernels, compiled twice from this one source: cython_kernels.pyx for any
# x86-64 (or other) CPU, cython_kernels_avx2.pyx with AVX2 and FMA (fastnn.kernels
# loads the second where the CPU has them).
import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t

from abi cimport BCE, CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, MSE, STEP, Hyper
from blas cimport bind_cells, gemm
from csr cimport csr_row_gradient, csr_row_product
from scalar cimport (Step, _exp, activate_all, activation_gradient_all, adam_constants, adam_step, batch_loss,
                     row_max, sgd_constants, sgd_steps, weight_total)

# Every matrix product goes to the provider installed in gemm.py's cells.
from fastnn.kernels.gemm import CELLS_ADDRESS
bind_cells(CELLS_ADDRESS)

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTNN_OPENMP 1
    #else
    #define FASTNN_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    int FASTNN_OPENMP
    int omp_get_max_threads() noexcept nogil

cdef object FLOAT32 = np.dtype(np.float32), FLOAT64 = np.dtype(np.float64)
cdef object INT64 = np.dtype(np.int64)


def openmp_info():
    """Whether this module was built with OpenMP, and its thread limit (the kernels are serial)."""
    return {"openmp": bool(FASTNN_OPENMP), "max_threads": omp_get_max_threads()}


cdef bint _is_float64(tuple arrays) except -1:
    """True if the arrays (None skipped) are all float64, False if all float32; else TypeError."""
    first = getattr(arrays[0], "dtype", None)
    for a in arrays:
        if a is not None and getattr(a, "dtype", None) != first:
            break
    else:
        if first == FLOAT64:
            return True
        if first == FLOAT32:
            return False
    raise TypeError("expected arrays that are all float32 or all float64; got dtypes "
                    + ", ".join([str(getattr(a, "dtype", type(a).__name__))
                                 for a in arrays if a is not None]))


cdef int _check_activation(int activation, bint forward) except -1:
    """ValueError unless activation is a known code (with a gradient if not forward)."""
    if not IDENTITY <= activation <= STEP:
        raise ValueError(f"unknown activation code {activation}")
    if activation == STEP and not forward:
        raise ValueError("the step activation has no gradient: it is forward only")
    return 0



# Implementations, one per kernel, specialised for float and double.

cdef void _matmul(const floating[:, ::1] A, const floating[:, ::1] B,
                  floating[:, ::1] out) noexcept:
    with nogil:
        gemm(A, False, B, False, out)


cdef void _activation_forward(const floating[:, ::1] Z, floating[:, ::1] out,
                              int activation, floating alpha) noexcept:
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        return  # no element 0 to point at
    with nogil:
        activate_all(&Z[0, 0], &out[0, 0], Z.shape[0] * Z.shape[1], activation, alpha)


cdef void _activation_backward(const floating[:, ::1] A, const floating[:, ::1] dA,
                               floating[:, ::1] out, int activation,
                               floating alpha) noexcept:
    if A.shape[0] == 0 or A.shape[1] == 0:
        return  # no element 0 to point at
    with nogil:
        activation_gradient_all(&A[0, 0], &dA[0, 0], &out[0, 0], A.shape[0] * A.shape[1],
                                activation, alpha)


cdef void _dense_forward(const floating[:, ::1] X, const floating[:, ::1] W,
                         const floating[::1] b, floating[:, ::1] out,
                         int activation, floating alpha) noexcept:
    cdef Py_ssize_t i, j, cols = out.shape[1]
    with nogil:
        gemm(X, False, W, False, out)
        if cols == 0:
            return  # no element 0 of a row to point at
        # One pass over out: each row gets its bias, then its activation while
        # it is still in cache.
        for i in range(out.shape[0]):
            for j in range(cols):
                out[i, j] += b[j]
            activate_all(&out[i, 0], &out[i, 0], cols, activation, alpha)


cdef void _column_sums(const floating[:, ::1] dZ, floating[::1] db) noexcept nogil:
    """db = dZ summed over rows, row by row in its dtype (as np.sum(dZ, axis=0))."""
    cdef Py_ssize_t i, j
    db[:] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            db[j] += dZ[i, j]


cdef void _dense_backward(const floating[:, ::1] X, const floating[:, ::1] W,
                          const floating[:, ::1] dZ, floating[:, ::1] dW,
                          floating[::1] db, floating[:, ::1] dX) noexcept:
    cdef bint want_dX = dX is not None
    with nogil:
        gemm(X, True, dZ, False, dW)
        _column_sums(dZ, db)
        if want_dX:
            gemm(dZ, False, W, True, dX)


cdef void _csr_dense_forward(const floating[::1] values, const int64_t[::1] indices, const int64_t[::1] indptr,
                             const floating[:, ::1] W, const floating[::1] b, floating[:, ::1] out,
                             int activation, floating alpha) noexcept:
    cdef Py_ssize_t i, j, cols = out.shape[1]
    # No entries (values empty) leave no element 0 to point at; then no row reads one.
    cdef const floating* v = &values[0] if values.shape[0] > 0 else NULL
    cdef const int64_t* k = &indices[0] if indices.shape[0] > 0 else NULL
    if cols == 0:
        return  # no element 0 of a row to point at
    with nogil:
        for i in range(out.shape[0]):
            for j in range(cols):
                out[i, j] = b[j]
            csr_row_product(v, k, indptr[i], indptr[i + 1], &W[0, 0], cols, &out[i, 0], 0, cols)
            activate_all(&out[i, 0], &out[i, 0], cols, activation, alpha)


cdef void _csr_dense_backward(const floating[::1] values, const int64_t[::1] indices, const int64_t[::1] indptr,
                              const floating[:, ::1] dZ, floating[:, ::1] dW, floating[::1] db) noexcept:
    cdef Py_ssize_t i, n_in = dW.shape[0], cols = dZ.shape[1]
    cdef const floating* v = &values[0] if values.shape[0] > 0 else NULL
    cdef const int64_t* k = &indices[0] if indices.shape[0] > 0 else NULL
    with nogil:
        dW[:, :] = 0
        _column_sums(dZ, db)
        if cols == 0 or n_in == 0:
            return  # no element 0 to point at
        for i in range(dZ.shape[0]):
            csr_row_gradient(v, k, indptr[i], indptr[i + 1], &dZ[i, 0], cols, &dW[0, 0], 0, n_in)


cdef void _softmax(const floating[:, ::1] Z, floating[:, ::1] out) noexcept:
    cdef Py_ssize_t i, j, cols = Z.shape[1]
    cdef floating zmax
    cdef double total
    if cols == 0:
        return  # rows without an element 0 to point at
    with nogil:
        for i in range(Z.shape[0]):
            zmax = <floating>row_max(&Z[i, 0], cols)
            total = 0
            for j in range(cols):
                out[i, j] = _exp(Z[i, j] - zmax)
                total += out[i, j]
            for j in range(cols):
                out[i, j] = out[i, j] / total


# Losses (scalar.pxd's rows, in double): rows weighted by w_i = 1 / batch, or by
# sample_weight_i / sum(sample_weight) when sample_weight is given.

cdef double _loss(int loss, const floating[:, ::1] Z, const int64_t[::1] labels,
                  const floating[:, ::1] target, floating[:, ::1] grad,
                  const floating[::1] sample_weight) noexcept:
    """The loss of Z and its gradient into grad: labels for CROSS_ENTROPY, else target
    (Z has rows and columns: contract.py checks)."""
    cdef Py_ssize_t batch = Z.shape[0], cols = Z.shape[1]
    cdef const floating* weights = NULL
    cdef double total
    if sample_weight is not None:
        weights = &sample_weight[0]
    with nogil:
        total = weight_total(weights, NULL, 0, batch)
        return batch_loss(loss, &Z[0, 0], batch, cols, &labels[0] if loss == CROSS_ENTROPY else NULL,
                          &target[0, 0] if loss != CROSS_ENTROPY else NULL, weights, total, &grad[0, 0])


# Optimisers: one pass over the flat buffers, in place, in the precision of the arrays
# (scalar.pxd's steps).

cdef void _sgd_update(floating[::1] params, const floating[::1] grad, floating[::1] velocity,
                      double lr, double momentum, bint nesterov, double weight_decay) noexcept:
    cdef Py_ssize_t n = params.shape[0]
    cdef Hyper hyper
    hyper.lr, hyper.momentum, hyper.nesterov, hyper.weight_decay = lr, momentum, nesterov, weight_decay
    cdef Step c = sgd_constants(&hyper)
    if n > 0:
        with nogil:
            sgd_steps(&params[0], &grad[0], 1, &velocity[0], n, c)


cdef void _adam_update(floating[::1] params, const floating[::1] grad, floating[::1] m,
                       floating[::1] v, long step, double lr, double beta1, double beta2,
                       double eps, double weight_decay, bint decoupled) noexcept:
    cdef Py_ssize_t i, n = params.shape[0]
    cdef Hyper hyper
    hyper.lr, hyper.beta1, hyper.beta2, hyper.eps = lr, beta1, beta2, eps
    hyper.weight_decay, hyper.decoupled = weight_decay, decoupled
    cdef Step c = adam_constants(&hyper, step)
    with nogil:
        for i in range(n):
            adam_step(&params[i], grad[i], &m[i], &v[i], c)


# The kernels, with the signatures of reference.py.

def matmul(A, B, out):
    """out = A @ B."""
    if _is_float64((A, B, out)):
        _matmul[double](A, B, out)
    else:
        _matmul[float](A, B, out)


def activation_forward(Z, out, activation, alpha=0.01):
    """out = f(Z) elementwise; alpha is the negative slope of leaky_relu."""
    _check_activation(activation, True)
    if _is_float64((Z, out)):
        _activation_forward[double](Z, out, activation, alpha)
    else:
        _activation_forward[float](Z, out, activation, alpha)


def activation_backward(A, dA, out, activation, alpha=0.01):
    """out = dA * f'(Z), computed from the saved output A = f(Z)."""
    _check_activation(activation, False)
    if _is_float64((A, dA, out)):
        _activation_backward[double](A, dA, out, activation, alpha)
    else:
        _activation_backward[float](A, dA, out, activation, alpha)


def dense_forward(X, W, b, out, activation, alpha=0.01):
    """out = f(X @ W + b)."""
    _check_activation(activation, True)
    if _is_float64((X, W, b, out)):
        _dense_forward[double](X, W, b, out, activation, alpha)
    else:
        _dense_forward[float](X, W, b, out, activation, alpha)


def dense_backward(X, W, dZ, dW, db, dX=None):
    """dW = X.T @ dZ, db = dZ summed over rows, dX = dZ @ W.T (skipped if dX is None)."""
    if _is_float64((X, W, dZ, dW, db, dX)):
        _dense_backward[double](X, W, dZ, dW, db, dX)
    else:
        _dense_backward[float](X, W, dZ, dW, db, dX)


def csr_dense_forward(values, indices, indptr, W, b, out, activation, alpha=0.01):
    """out = f(X @ W + b) for the sparse X of CSR arrays values, indices, indptr."""
    _check_activation(activation, True)
    if _is_float64((values, W, b, out)):
        _csr_dense_forward[double](values, indices, indptr, W, b, out, activation, alpha)
    else:
        _csr_dense_forward[float](values, indices, indptr, W, b, out, activation, alpha)


def csr_dense_backward(values, indices, indptr, dZ, dW, db):
    """dW = X.T @ dZ and db = dZ summed over rows for the sparse X of CSR arrays."""
    if _is_float64((values, dZ, dW, db)):
        _csr_dense_backward[double](values, indices, indptr, dZ, dW, db)
    else:
        _csr_dense_backward[float](values, indices, indptr, dZ, dW, db)


def softmax(Z, out):
    """Row-wise softmax, shifted by the row maximum so any finite logits stay finite."""
    if _is_float64((Z, out)):
        _softmax[double](Z, out)
    else:
        _softmax[float](Z, out)


def softmax_cross_entropy(Z, labels, grad, sample_weight=None):
    """Mean cross-entropy of softmax(Z) against integer labels."""
    if getattr(labels, "dtype", None) != INT64:
        raise TypeError(f"labels must be int64; got {getattr(labels, 'dtype', type(labels))}")
    if _is_float64((Z, grad, sample_weight)):
        return _loss[double](CROSS_ENTROPY, Z, labels, None, grad, sample_weight)
    return _loss[float](CROSS_ENTROPY, Z, labels, None, grad, sample_weight)


def softmax_cross_entropy_soft(Z, target, grad, sample_weight=None):
    """Mean cross-entropy of softmax(Z) against one-hot or soft targets T."""
    if _is_float64((Z, target, grad, sample_weight)):
        return _loss[double](CROSS_ENTROPY_SOFT, Z, None, target, grad, sample_weight)
    return _loss[float](CROSS_ENTROPY_SOFT, Z, None, target, grad, sample_weight)


def mse(pred, target, grad, sample_weight=None):
    """Mean squared error over all elements: loss = sum_i w_i mean_j (P - T)_ij**2."""
    if _is_float64((pred, target, grad, sample_weight)):
        return _loss[double](MSE, pred, None, target, grad, sample_weight)
    return _loss[float](MSE, pred, None, target, grad, sample_weight)


def bce_with_logits(Z, target, grad, sample_weight=None):
    """Binary cross-entropy of sigmoid(Z) against targets in [0, 1], from logits."""
    if _is_float64((Z, target, grad, sample_weight)):
        return _loss[double](BCE, Z, None, target, grad, sample_weight)
    return _loss[float](BCE, Z, None, target, grad, sample_weight)


def sgd_update(params, grad, velocity, lr, momentum, nesterov, weight_decay):
    """One SGD step in place over flat buffers (PyTorch's semantics, no dampening)."""
    if _is_float64((params, grad, velocity)):
        _sgd_update[double](params, grad, velocity, lr, momentum, nesterov, weight_decay)
    else:
        _sgd_update[float](params, grad, velocity, lr, momentum, nesterov, weight_decay)


def adam_update(params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam step in place (PyTorch's Adam, or AdamW when decoupled)."""
    if _is_float64((params, grad, m, v)):
        _adam_update[double](params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay,
                             decoupled)
    else:
        _adam_update[float](params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay,
                            decoupled)
