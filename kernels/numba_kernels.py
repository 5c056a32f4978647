"""Numba kernels: the kernels of ``reference.py`` compiled to machine code.

The NumPy reference makes several passes over its arrays and allocates
temporaries; these kernels fuse the work into loops that write straight into
the caller's arrays and allocate nothing. Matrix products go to BLAS through
``np.dot(a, b, out)``; transposed operands become BLAS transpose flags, not
copies.

Each kernel is one source for float32 and float64: Numba compiles a
specialisation per dtype on first call and caches it on disk. Activations,
softmax and SGD compute in the arrays' dtype; the losses and Adam compute in
float64 like the reference, and sums accumulate in float64 (except db, which
follows np.sum). Signatures, formulas and conventions are those of
``reference.py``. No fastmath: reassociation could rewrite ``(z - max) - lse``
as ``z - (max + lse)`` and lose the precision the max shift protects.
"""
import numpy as np
from numba import njit

from .numba_cache import CACHE
from .reference import IDENTITY, LEAKY_RELU, RELU, SIGMOID, STEP, TANH

# Division by zero follows NumPy (inf/nan, no exception), which also keeps
# Python's zero-division checks out of the inner loops; nogil lets callers run
# kernels from several threads.
_OPTIONS = dict(cache=CACHE, nogil=True, error_model="numpy")


@njit(**_OPTIONS)
def matmul(A, B, out):
    """out = A @ B (BLAS)."""
    np.dot(A, B, out)


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
def _tanh(z):
    """tanh(z) by Cephes' method, in the dtype of z, within 1.4 ulp.

    A rational function of z**2 below |z| = 0.625, 1 - 2 / (exp(2|z|) + 1)
    above. Several times faster than the C library's tanh, which Numba calls
    once per element.
    """
    c = type(z)
    a = abs(z)
    if a >= c(0.625):
        t = c(1) - c(2) / (np.exp(a + a) + c(1))
        return t if z > c(0) else -t
    if z == c(0):
        return z  # keeps the sign of -0.0
    s = z * z
    p = (c(-9.64399179425052238628e-1) * s + c(-9.92877231001918586564e1)) * s + c(
        -1.61468768441708447952e3
    )
    q = ((s + c(1.12811678491632931402e2)) * s + c(2.23548839060100448583e3)) * s + c(
        4.84406305325125486048e3
    )
    return z + z * s * (p / q)


# The loop helpers below are inlined into each kernel so that, when a kernel
# passes the same array as input and output, LLVM sees one pointer and
# vectorises the loops; with two distinct arguments its runtime overlap check
# would send an in-place call down the scalar path.
@njit(inline="always", **_OPTIONS)
def _forward(Z, bias, out, activation, alpha):
    """out = f(Z + bias) elementwise; bias None means no bias."""
    rows, cols = Z.shape
    zero = Z.dtype.type(0)
    one = Z.dtype.type(1)
    slope = Z.dtype.type(alpha)
    if activation == IDENTITY:
        for i in range(rows):
            for j in range(cols):
                out[i, j] = _with_bias(Z[i, j], bias, j)
    elif activation == RELU:
        for i in range(rows):
            for j in range(cols):
                z = _with_bias(Z[i, j], bias, j)
                out[i, j] = zero if z < zero else z  # NaN passes, like np.maximum
    elif activation == LEAKY_RELU:
        for i in range(rows):
            for j in range(cols):
                z = _with_bias(Z[i, j], bias, j)
                out[i, j] = z if z > zero else z * slope
    elif activation == SIGMOID:
        # Stable two-branch form sharing one exp: e = exp(-|z|) <= 1.
        for i in range(rows):
            for j in range(cols):
                z = _with_bias(Z[i, j], bias, j)
                e = np.exp(-abs(z))
                s = one / (one + e)
                out[i, j] = s if z >= zero else e * s
    elif activation == TANH:
        for i in range(rows):
            for j in range(cols):
                out[i, j] = _tanh(_with_bias(Z[i, j], bias, j))
    elif activation == STEP:
        for i in range(rows):
            for j in range(cols):
                out[i, j] = one if _with_bias(Z[i, j], bias, j) >= zero else zero
    else:
        raise ValueError("unknown activation code")


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
    rows, cols = A.shape
    zero = A.dtype.type(0)
    one = A.dtype.type(1)
    slope = A.dtype.type(alpha)
    if activation == IDENTITY:
        for i in range(rows):
            for j in range(cols):
                out[i, j] = dA[i, j]
    elif activation == RELU:
        for i in range(rows):
            for j in range(cols):
                out[i, j] = dA[i, j] if A[i, j] > zero else zero
    elif activation == LEAKY_RELU:
        for i in range(rows):
            for j in range(cols):
                d = dA[i, j]
                out[i, j] = d if A[i, j] > zero else d * slope
    elif activation == SIGMOID:
        for i in range(rows):
            for j in range(cols):
                a = A[i, j]
                out[i, j] = dA[i, j] * a * (one - a)
    elif activation == TANH:
        for i in range(rows):
            for j in range(cols):
                a = A[i, j]
                out[i, j] = dA[i, j] * (one - a * a)
    elif activation == STEP:
        raise ValueError("the step activation has no gradient: it is forward only")
    else:
        raise ValueError("unknown activation code")


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
    np.dot(X, W, out)
    _forward(out, b, out, activation, alpha)


@njit(**_OPTIONS)
def dense_backward(X, W, dZ, dW, db, dX=None):
    """dW = X.T @ dZ, db = column sums of dZ, dX = dZ @ W.T unless dX is None.

    db adds dZ row by row in its dtype, as np.sum(dZ, axis=0) does: a float64
    accumulator per column would need a scratch vector or a strided loop that
    cannot be vectorised (5-50x slower).
    """
    np.dot(X.T, dZ, dW)
    db[:] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            db[j] += dZ[i, j]
    if dX is not None:
        np.dot(dZ, W.T, dX)


@njit(**_OPTIONS)
def _row_max(Z, i):
    """Largest entry of row i, in its dtype (-inf for an empty row)."""
    top = Z.dtype.type(-np.inf)
    for j in range(Z.shape[1]):
        if Z[i, j] > top:
            top = Z[i, j]
    return top


@njit(**_OPTIONS)
def softmax(Z, out):
    """Row-wise softmax shifted by the row max; sums in float64; out may be Z."""
    rows, cols = Z.shape
    for i in range(rows):
        top = _row_max(Z, i)
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


@njit(**_OPTIONS)
def _log_sum_exp_shift(Z, i):
    """(max, log sum exp(Z[i] - max)) of row i, in float64."""
    top = np.float64(_row_max(Z, i))
    total = 0.0
    for j in range(Z.shape[1]):
        total += np.exp(Z[i, j] - top)
    return top, np.log(total)


@njit(**_OPTIONS)
def softmax_cross_entropy(Z, labels, grad, sample_weight=None):
    """Weighted mean cross-entropy of softmax(Z) against int labels; see reference.py."""
    rows, cols = Z.shape
    total_weight = _weight_total(sample_weight, rows)
    loss = 0.0
    for i in range(rows):
        w = _weight(sample_weight, total_weight, i)
        label = labels[i]
        top, lse = _log_sum_exp_shift(Z, i)
        loss -= w * ((Z[i, label] - top) - lse)
        for j in range(cols):
            p = np.exp((Z[i, j] - top) - lse)
            grad[i, j] = (p - 1.0 if j == label else p) * w
    return loss


@njit(**_OPTIONS)
def softmax_cross_entropy_soft(Z, target, grad, sample_weight=None):
    """Weighted mean cross-entropy of softmax(Z) against dense targets; see reference.py."""
    rows, cols = Z.shape
    total_weight = _weight_total(sample_weight, rows)
    loss = 0.0
    for i in range(rows):
        w = _weight(sample_weight, total_weight, i)
        top, lse = _log_sum_exp_shift(Z, i)
        target_sum = 0.0
        for j in range(cols):
            target_sum += target[i, j]
        row_loss = 0.0
        for j in range(cols):
            t = np.float64(target[i, j])
            log_p = (Z[i, j] - top) - lse
            row_loss += t * log_p
            grad[i, j] = (np.exp(log_p) * target_sum - t) * w
        loss -= w * row_loss
    return loss


@njit(**_OPTIONS)
def mse(pred, target, grad, sample_weight=None):
    """Weighted mean squared error over all elements; see reference.py."""
    rows, cols = pred.shape
    total_weight = _weight_total(sample_weight, rows)
    loss = 0.0
    for i in range(rows):
        w = _weight(sample_weight, total_weight, i)
        scale = 2.0 * w / cols
        row_loss = 0.0
        for j in range(cols):
            diff = np.float64(pred[i, j]) - np.float64(target[i, j])
            row_loss += diff * diff
            grad[i, j] = diff * scale
        loss += w * row_loss
    return loss / cols


@njit(**_OPTIONS)
def bce_with_logits(Z, target, grad, sample_weight=None):
    """Weighted mean binary cross-entropy from logits, stable for any z; see reference.py."""
    rows, cols = Z.shape
    total_weight = _weight_total(sample_weight, rows)
    loss = 0.0
    for i in range(rows):
        w = _weight(sample_weight, total_weight, i)
        scale = w / cols
        row_loss = 0.0
        for j in range(cols):
            z = np.float64(Z[i, j])
            t = np.float64(target[i, j])
            e = np.exp(-abs(z))
            row_loss += max(z, 0.0) - z * t + np.log1p(e)
            sigmoid = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
            grad[i, j] = (sigmoid - t) * scale
        loss += w * row_loss
    return loss / cols


@njit(**_OPTIONS)
def sgd_update(params, grad, velocity, lr, momentum, nesterov, weight_decay):
    """One fused in-place SGD step (PyTorch semantics), in the params' dtype; see reference.py."""
    cast = params.dtype.type
    lr_, momentum_, decay = cast(lr), cast(momentum), cast(weight_decay)
    for k in range(params.size):
        g = grad[k] + decay * params[k]
        if momentum != 0.0:
            v = momentum_ * velocity[k] + g
            velocity[k] = v
            g = g + momentum_ * v if nesterov else v
        params[k] -= lr_ * g


@njit(**_OPTIONS)
def adam_update(params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One fused in-place Adam/AdamW step, arithmetic in float64; see reference.py."""
    shrink = 1.0 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    step_size = lr / (1.0 - beta1 ** step)
    sqrt_bias2 = np.sqrt(1.0 - beta2 ** step)
    for k in range(params.size):
        p = params[k] * shrink
        g = np.float64(grad[k])
        if l2 != 0.0:
            g += l2 * p
        m_k = beta1 * m[k] + (1.0 - beta1) * g
        v_k = beta2 * v[k] + (1.0 - beta2) * g * g
        m[k] = m_k
        v[k] = v_k
        params[k] = p - step_size * m_k / (np.sqrt(v_k) / sqrt_bias2 + eps)
