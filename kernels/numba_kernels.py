"""Numba kernels: the kernels of ``reference.py`` compiled to machine code.

The NumPy reference makes several passes over its arrays and allocates
temporaries; these kernels fuse the work into loops that write straight into
the caller's arrays and allocate nothing. Matrix products go to the BLAS provider
through numba_gemm.gemm; transposed operands become BLAS transpose flags, not copies.

Each kernel is one source for float32 and float64: Numba compiles a
specialisation per dtype on first call and caches it on disk. The kernels are
loops; the math they apply per element or row is numba_scalar.py's, which the
engine applies too. Activations, softmax, SGD and Adam compute in the arrays'
dtype (Adam's constants in float64); the losses compute in float64 like the
reference, and sums accumulate in float64 (except db, which follows np.sum).
Signatures, formulas and conventions are those of ``reference.py``. No fastmath: reassociation could rewrite ``(z - max) - lse``
as ``z - (max + lse)`` and lose the precision the max shift protects.
"""
import numpy as np
from numba import njit

from .abi import IDENTITY, LEAKY_RELU, RELU, SIGMOID, STEP, TANH
from .numba_cache import CACHE
from .numba_gemm import gemm
from .numba_scalar import (activate, activation_gradient, adam_constants, adam_step, bce_row, cross_entropy_row,
                           cross_entropy_soft_row, decayed, descend, momentum_step, row_max, squared_error_row)

# Division by zero follows NumPy (inf/nan, no exception), which also keeps
# Python's zero-division checks out of the inner loops; nogil lets callers run
# kernels from several threads.
_OPTIONS = dict(cache=CACHE, nogil=True, error_model="numpy")


@njit(**_OPTIONS)
def matmul(A, B, out):
    """out = A @ B (BLAS)."""
    gemm(A, False, B, False, out)


@njit(**_OPTIONS)
def _same_data(a, b):
    """Whether a and b start at the same address (an in-place call)."""
    return a.ctypes.data == b.ctypes.data


@njit(**_OPTIONS)
def _with_bias(z, bias, j):
    """z + bias[j], or z when bias is None."""
    if bias is None:
        return z
    return z + bias[j]


@njit(**_OPTIONS)
def _check_code(activation):
    """ValueError unless activation is one of the codes of abi.py."""
    if not (activation == IDENTITY or activation == RELU or activation == LEAKY_RELU or activation == SIGMOID
            or activation == TANH or activation == STEP):
        raise ValueError("unknown activation code")


# The loop helpers below are inlined into each kernel so that, when a kernel
# passes the same array as input and output, LLVM sees one pointer and
# vectorises the loops; with two distinct arguments its runtime overlap check
# would send an in-place call down the scalar path. The activation code does
# not change in a loop: LLVM unswitches the loop into one per code, each
# vectorised where its function allows.
@njit(inline="always", **_OPTIONS)
def _forward(Z, bias, out, activation, alpha):
    """out = f(Z + bias) elementwise; bias None means no bias."""
    _check_code(activation)
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            out[i, j] = activate(_with_bias(Z[i, j], bias, j), activation, alpha)


@njit(**_OPTIONS)
def activation_forward(Z, out, activation, alpha=0.01):
    """out = f(Z) elementwise; out may be Z."""
    if _same_data(Z, out):
        _forward(out, None, out, activation, alpha)
    else:
        _forward(Z, None, out, activation, alpha)


@njit(inline="always", **_OPTIONS)
def _backward(A, dA, out, activation, alpha):
    """out = dA * f'(Z) from A = f(Z), elementwise."""
    if activation == STEP:
        raise ValueError("the step activation has no gradient: it is forward only")
    _check_code(activation)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i, j] = activation_gradient(A[i, j], dA[i, j], activation, alpha)


@njit(**_OPTIONS)
def activation_backward(A, dA, out, activation, alpha=0.01):
    """out = dA * f'(Z) from the saved output A = f(Z); out may be A or dA."""
    if _same_data(out, dA):
        _backward(A, out, out, activation, alpha)
    elif _same_data(out, A):
        _backward(out, dA, out, activation, alpha)
    else:
        _backward(A, dA, out, activation, alpha)


@njit(**_OPTIONS)
def dense_forward(X, W, b, out, activation, alpha=0.01):
    """out = f(X @ W + b): BLAS GEMM, then one pass adding b and applying f."""
    gemm(X, False, W, False, out)
    _forward(out, b, out, activation, alpha)


@njit(inline="always", **_OPTIONS)
def _column_sums(dZ, db):
    """db = dZ summed over rows, row by row in its dtype (dense_backward says why)."""
    db[:] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            db[j] += dZ[i, j]


@njit(**_OPTIONS)
def dense_backward(X, W, dZ, dW, db, dX=None):
    """dW = X.T @ dZ, db = column sums of dZ, dX = dZ @ W.T unless dX is None.

    db adds dZ row by row in its dtype, as np.sum(dZ, axis=0) does: a float64
    accumulator per column would need a scratch vector or a strided loop that
    cannot be vectorised (5-50x slower).
    """
    gemm(X, True, dZ, False, dW)
    _column_sums(dZ, db)
    if dX is not None:
        gemm(dZ, False, W, True, dX)


@njit(inline="always", **_OPTIONS)
def _csr_row_product(values, indices, start, end, W, out, i):
    """out[i] = sum over p in start:end of values[p] * W[indices[p]]: the stored entries of
    a sparse row, four per pass over the output row (a pass reads and writes it once; one
    entry per pass made batch 32 of the digits 1.6x slower)."""
    for j in range(out.shape[1]):  # element by element: a row view would cost reference counting
        out[i, j] = 0
    p = start
    while p + 4 <= end:
        v0, v1, v2, v3 = values[p], values[p + 1], values[p + 2], values[p + 3]
        r0, r1, r2, r3 = np.uint64(indices[p]), np.uint64(indices[p + 1]), np.uint64(indices[p + 2]), \
            np.uint64(indices[p + 3])
        for j in range(out.shape[1]):
            out[i, j] += v0 * W[r0, j] + v1 * W[r1, j] + v2 * W[r2, j] + v3 * W[r3, j]
        p += 4
    for q in range(p, end):
        v, r = values[q], np.uint64(indices[q])
        for j in range(out.shape[1]):
            out[i, j] += v * W[r, j]


@njit(**_OPTIONS)
def csr_dense_forward(values, indices, indptr, W, b, out, activation, alpha=0.01):
    """out = f(X @ W + b) for the CSR rows X: each stored entry adds its value times its
    row of W (the zeros cost nothing), then one pass adds b and applies f."""
    for i in range(out.shape[0]):
        _csr_row_product(values, indices, indptr[i], indptr[i + 1], W, out, i)
    _forward(out, b, out, activation, alpha)


@njit(**_OPTIONS)
def csr_dense_backward(values, indices, indptr, dZ, dW, db):
    """dW = X.T @ dZ and db = column sums of dZ for the CSR rows X: each stored entry adds
    its value times its row of dZ to its row of dW."""
    dW[:, :] = 0
    _column_sums(dZ, db)
    for i in range(dZ.shape[0]):
        for p in range(indptr[i], indptr[i + 1]):
            value, row = values[p], np.uint64(indices[p])  # unsigned: no wraparound check in the loop
            for j in range(dZ.shape[1]):
                dW[row, j] += value * dZ[i, j]


@njit(**_OPTIONS)
def softmax(Z, out):
    """Row-wise softmax shifted by the row max; sums in float64; out may be Z."""
    rows, cols = Z.shape
    for i in range(rows):
        top = row_max(Z, i)
        total = 0.0
        for j in range(cols):
            e = np.exp(Z[i, j] - top)
            out[i, j] = e
            total += e
        scale = Z.dtype.type(1.0 / total)
        for j in range(cols):
            out[i, j] *= scale


@njit(**_OPTIONS)
def _weight_total(sample_weight, batch):
    """Normaliser of the row weights: sum(sample_weight) in float64, or batch;
    1 when every weight is 0, so such a batch has loss and gradient 0."""
    if sample_weight is None:
        return float(batch)
    total = 0.0
    for w in sample_weight:
        total += w
    return total if total > 0 else 1.0


@njit(**_OPTIONS)
def _weight(sample_weight, total, i):
    """Normalised weight of row i: sample_weight[i] / total, or 1 / batch."""
    if sample_weight is None:
        return 1.0 / total
    return sample_weight[i] / total


@njit(inline="always", **_OPTIONS)
def _weighted_mean(row, Z, target, grad, sample_weight):
    """sum_i w_i row(Z, target, i, grad, w_i) over the rows, in float64: w_i = 1/batch, or
    sample_weight_i / sum(sample_weight) (0 when every weight is 0)."""
    total_weight = _weight_total(sample_weight, Z.shape[0])
    loss = 0.0
    for i in range(Z.shape[0]):
        w = _weight(sample_weight, total_weight, i)
        loss += w * row(Z, target, i, grad, w)
    return loss


@njit(**_OPTIONS)
def softmax_cross_entropy(Z, labels, grad, sample_weight=None):
    """Weighted mean cross-entropy of softmax(Z) against int labels; see reference.py."""
    return _weighted_mean(cross_entropy_row, Z, labels, grad, sample_weight)


@njit(**_OPTIONS)
def softmax_cross_entropy_soft(Z, target, grad, sample_weight=None):
    """Weighted mean cross-entropy of softmax(Z) against dense targets; see reference.py."""
    return _weighted_mean(cross_entropy_soft_row, Z, target, grad, sample_weight)


@njit(**_OPTIONS)
def mse(pred, target, grad, sample_weight=None):
    """Weighted mean squared error over all elements; see reference.py."""
    return _weighted_mean(squared_error_row, pred, target, grad, sample_weight) / pred.shape[1]


@njit(**_OPTIONS)
def bce_with_logits(Z, target, grad, sample_weight=None):
    """Weighted mean binary cross-entropy from logits, stable for any z; see reference.py."""
    return _weighted_mean(bce_row, Z, target, grad, sample_weight) / Z.shape[1]


@njit(**_OPTIONS)
def sgd_update(params, grad, velocity, lr, momentum, nesterov, weight_decay):
    """One fused in-place SGD step (PyTorch semantics), in the params' dtype; see reference.py."""
    cast = params.dtype.type
    lr_, momentum_, decay = cast(lr), cast(momentum), cast(weight_decay)
    for k in range(params.size):
        g = decayed(grad[k], params[k], decay)
        if momentum != 0.0:
            g, velocity[k] = momentum_step(g, velocity[k], momentum_, nesterov)
        params[k] = descend(params[k], g, lr_)


@njit(**_OPTIONS)
def adam_update(params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One fused in-place Adam/AdamW step in the params' dtype, one division per parameter;
    see reference.py."""
    constants = adam_constants(params, step, lr, beta1, beta2, eps, weight_decay, decoupled)
    for k in range(params.size):
        params[k], m[k], v[k] = adam_step(params[k], grad[k], m[k], v[k], constants)
