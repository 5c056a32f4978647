"""The Numba kernels' and engine's math, written once: element and row functions.

Each activation f(z) and its gradient read off the saved output a = f(z); each loss's
value and gradient for one row (log-sum-exp form, in float64); the metric of one row; one
parameter's SGD and Adam steps. numba_kernels.py loops over them for the per-module
path and numba_engine.py for its own loops, so both compute the same numbers from the
same source. They are inlined into every loop that calls them (inline="always"), where
LLVM vectorises what it can, and take plain scalars and arrays, no module-level state.
Activations, SGD and Adam compute in the dtype of their arguments; the losses in float64.
Numba's on-disk cache checks only the cached function's own source file: after editing
this one, delete the kernels' *.nbi and *.nbc files (in __pycache__ or NUMBA_CACHE_DIR)
so that numba_kernels.py and numba_engine.py compile it in.
"""
import numpy as np
from numba import njit

from .abi import CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, LEAKY_RELU, RELU, SIGMOID, STEP
from .numba_cache import CACHE

_OPTIONS = dict(cache=CACHE, nogil=True, error_model="numpy")
_INLINE = dict(inline="always", **_OPTIONS)


@njit(**_INLINE)
def relu(z):
    c = type(z)
    return c(0) if z < c(0) else z  # NaN passes, like np.maximum


@njit(**_INLINE)
def leaky_relu(z, alpha):
    return z if z > type(z)(0) else z * type(z)(alpha)


@njit(**_INLINE)
def sigmoid(z):
    """The stable two-branch form sharing one exp: e = exp(-|z|) <= 1."""
    c = type(z)
    e = np.exp(-abs(z))
    s = c(1) / (c(1) + e)
    return s if z >= c(0) else e * s


@njit(**_OPTIONS)
def tanh(z):
    """tanh(z) by Cephes' method, in the dtype of z, within 1.4 ulp.

    A rational function of z**2 below |z| = 0.625, 1 - 2 / (exp(2|z|) + 1)
    above. Several times faster than the C library's tanh, which Numba calls
    once per element. Not inlined into Numba's IR as the others are: LLVM inlines
    it anyway, and after Numba's inlining it left the float64 loops unvectorised.
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


@njit(**_INLINE)
def step(z):
    c = type(z)
    return c(1) if z >= c(0) else c(0)


@njit(**_INLINE)
def activate(z, code, alpha):
    """f(z) for an activation code of abi.py; alpha is leaky_relu's slope."""
    if code == RELU:
        return relu(z)
    if code == LEAKY_RELU:
        return leaky_relu(z, alpha)
    if code == SIGMOID:
        return sigmoid(z)
    if code == IDENTITY:
        return z
    if code == STEP:
        return step(z)
    return tanh(z)


@njit(**_INLINE)
def relu_gradient(a, d):
    return d if a > type(a)(0) else type(a)(0)


@njit(**_INLINE)
def leaky_relu_gradient(a, d, alpha):
    return d if a > type(a)(0) else d * type(a)(alpha)


@njit(**_INLINE)
def sigmoid_gradient(a, d):
    return d * a * (type(a)(1) - a)


@njit(**_INLINE)
def tanh_gradient(a, d):
    return d * (type(a)(1) - a * a)


@njit(**_INLINE)
def activation_gradient(a, d, code, alpha):
    """d * f'(z) from the saved output a = f(z) (step has none: the callers refuse it)."""
    if code == RELU:
        return relu_gradient(a, d)
    if code == LEAKY_RELU:
        return leaky_relu_gradient(a, d, alpha)
    if code == SIGMOID:
        return sigmoid_gradient(a, d)
    if code == IDENTITY:
        return d
    return tanh_gradient(a, d)


@njit(**_INLINE)
def row_max(Z, i):
    """Largest entry of row i, in its dtype (-inf for an empty row)."""
    top = Z.dtype.type(-np.inf)
    for j in range(Z.shape[1]):
        if Z[i, j] > top:
            top = Z[i, j]
    return top


@njit(**_INLINE)
def argmax(Z, i):
    """The column of row i's largest entry (the first one on ties)."""
    best = 0
    for j in range(1, Z.shape[1]):
        if Z[i, j] > Z[i, best]:
            best = j
    return best


@njit(**_INLINE)
def log_sum_exp_shift(Z, i):
    """(max, log sum exp(Z[i] - max)) of row i, in float64."""
    top = np.float64(row_max(Z, i))
    total = 0.0
    for j in range(Z.shape[1]):
        total += np.exp(Z[i, j] - top)
    return top, np.log(total)


# The loss rows: row i's loss (float64) and, into grad[i], w times its gradient with
# respect to Z[i]; w is the row's normalised weight.
@njit(**_INLINE)
def cross_entropy_row(Z, labels, i, grad, w):
    """-log softmax(Z[i])[labels[i]]; gradient softmax(Z[i]) - onehot."""
    label = labels[i]
    top, lse = log_sum_exp_shift(Z, i)
    for j in range(Z.shape[1]):
        p = np.exp((Z[i, j] - top) - lse)
        grad[i, j] = (p - 1.0 if j == label else p) * w
    return -((Z[i, label] - top) - lse)


@njit(**_INLINE)
def cross_entropy_soft_row(Z, target, i, grad, w):
    """-sum_j T[i, j] log softmax(Z[i])[j]; gradient softmax(Z[i]) * sum_j T[i, j] - T[i]."""
    top, lse = log_sum_exp_shift(Z, i)
    target_sum = 0.0
    for j in range(Z.shape[1]):
        target_sum += target[i, j]
    row_loss = 0.0
    for j in range(Z.shape[1]):
        t = np.float64(target[i, j])
        log_p = (Z[i, j] - top) - lse
        row_loss += t * log_p
        grad[i, j] = (np.exp(log_p) * target_sum - t) * w
    return -row_loss


@njit(**_INLINE)
def squared_error_row(pred, target, i, grad, w):
    """n_out times the row's mean squared error; gradient 2 (P[i] - T[i]) / n_out."""
    scale = 2.0 * w / pred.shape[1]
    row_loss = 0.0
    for j in range(pred.shape[1]):
        diff = np.float64(pred[i, j]) - np.float64(target[i, j])
        row_loss += diff * diff
        grad[i, j] = diff * scale
    return row_loss


@njit(**_INLINE)
def bce_row(Z, target, i, grad, w):
    """n_out times the row's mean binary cross-entropy of sigmoid(Z[i]) against T[i],
    max(z, 0) - z t + log1p(exp(-|z|)), stable for any z; gradient (sigmoid(z) - t) / n_out."""
    scale = w / Z.shape[1]
    row_loss = 0.0
    for j in range(Z.shape[1]):
        z = np.float64(Z[i, j])
        t = np.float64(target[i, j])
        e = np.exp(-abs(z))
        row_loss += max(z, 0.0) - z * t + np.log1p(e)
        s = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
        grad[i, j] = (s - t) * scale
    return row_loss


@njit(**_INLINE)
def metric_row(loss, out, labels, targets, i):
    """Row i's classification metric, as Loss.score: 1 if the largest output is the label
    (or the target row's largest entry), else 0; for BCE, the share of outputs on the
    target's side of 0 (probability 0.5)."""
    if loss == CROSS_ENTROPY:
        return 1.0 if argmax(out, i) == labels[i] else 0.0
    if loss == CROSS_ENTROPY_SOFT:
        return 1.0 if argmax(out, i) == argmax(targets, i) else 0.0
    hits = 0.0
    for j in range(out.shape[1]):
        hits += (out[i, j] > 0) == (targets[i, j] > 0.5)
    return hits / out.shape[1]


@njit(**_INLINE)
def r2_sum(out, targets):
    """rows * the mean over outputs of R² (MSE's metric, as Loss.score): 1 - residual /
    spread per output, 1 for an output fitted exactly where the targets do not vary."""
    rows, cols = out.shape
    total = 0.0
    for j in range(cols):
        mean = 0.0
        for i in range(rows):
            mean += targets[i, j]
        mean /= rows
        residual = spread = 0.0
        for i in range(rows):
            residual += (np.float64(targets[i, j]) - np.float64(out[i, j])) ** 2
            spread += (targets[i, j] - mean) ** 2
        if spread > 0:
            total += 1.0 - residual / spread
        elif residual == 0:
            total += 1.0
    return total * (rows / cols)


# Optimizer steps of one parameter, in its dtype (the constants cast to it by the caller).
@njit(**_INLINE)
def decayed(g, p, weight_decay):
    """The gradient with L2 weight decay: g + weight_decay * p."""
    return g + weight_decay * p


@njit(**_INLINE)
def descend(p, g, lr):
    """Gradient descent: p - lr * g."""
    return p - lr * g


@njit(**_INLINE)
def momentum_step(g, velocity, momentum, nesterov):
    """(the step's direction, the new velocity): velocity = momentum * velocity + g, then
    g + momentum * velocity (Nesterov) or velocity (PyTorch's SGD, no dampening)."""
    v = momentum * velocity + g
    return (g + momentum * v if nesterov else v), v


@njit(**_INLINE)
def adam_constants(params, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """adam_step's constants for update number step, computed in float64 and cast to the
    params' dtype: (shrink, l2, beta1, 1 - beta1, beta2, 1 - beta2, step size, eps');
    shrink = 1 - lr * weight_decay for AdamW (decoupled), else 1 and l2 = weight_decay;
    with s = sqrt(1 - beta2^t), step size = lr * s / (1 - beta1^t) and eps' = eps * s."""
    c = params.dtype.type
    t = np.float64(step)
    s = np.sqrt(1.0 - beta2 ** t)
    return (c(1.0 - lr * weight_decay if decoupled else 1.0), c(0.0 if decoupled else weight_decay),
            c(beta1), c(1.0 - beta1), c(beta2), c(1.0 - beta2), c(lr * s / (1.0 - beta1 ** t)), c(eps * s))


@njit(**_INLINE)
def adam_step(p, g, m, v, constants):
    """(p, m, v) after one Adam step: lr / (1 - beta1^t) * m / (sqrt(v) / s + eps) with one
    division, as step size * m / (sqrt(v) + eps'); see adam_constants and reference.py."""
    shrink, l2, beta1, keep1, beta2, keep2, step_size, eps = constants
    p = p * shrink
    g = decayed(g, p, l2)
    m = beta1 * m + keep1 * g
    v = beta2 * v + keep2 * g * g
    return p - step_size * m / (np.sqrt(v) + eps), m, v
