"""NumPy reference of every kernel: the oracle the other backends are tested against.

Conventions shared by all backends (see docs/kernels.md):
- batch rows: X (batch, in), W (in, out), b (out,), Z/A (batch, out);
- results go into caller-provided arrays; a kernel allocates no output;
- all float arrays of one call share a dtype, float32 or float64;
- ``activation`` is an integer code from ``fastnn.kernels.ACTIVATIONS``;
- a sparse X (the csr_ kernels) comes as CSR arrays: row i's entries are
  values[p] in column indices[p] for p in indptr[i]:indptr[i + 1], with indptr
  positions into values and indices (indptr[0] need not be 0: a slice of a
  larger matrix's indptr selects its rows);
- elementwise kernels accept ``out`` aliasing their input (in place);
- losses return the (weighted) mean loss as a Python float and write its
  gradient with respect to the logits/predictions into ``grad``.

The functions here are written for clarity, not speed; they may allocate
temporaries internally.
"""
import numpy as np
import scipy.sparse
from scipy.special import expit

from .abi import IDENTITY, LEAKY_RELU, RELU, SIGMOID, STEP, TANH

# Training has diverged once a batch's loss exceeds this (or is NaN): squares of numbers
# this large overflow float32, and no fit that converges comes near it.
LOSS_LIMIT = 1e18


def matmul(A, B, out):
    """out = A @ B."""
    np.matmul(A, B, out=out)


def activation_forward(Z, out, activation, alpha=0.01):
    """out = f(Z) elementwise; alpha is the negative slope of leaky_relu."""
    if activation == IDENTITY:
        out[...] = Z
    elif activation == RELU:
        np.maximum(Z, 0, out=out)
    elif activation == LEAKY_RELU:
        out[...] = np.where(Z > 0, Z, Z * Z.dtype.type(alpha))
    elif activation == SIGMOID:
        expit(Z, out=out)
    elif activation == TANH:
        np.tanh(Z, out=out)
    elif activation == STEP:
        out[...] = Z >= 0
    else:
        raise ValueError(f"unknown activation code {activation}")


def activation_backward(A, dA, out, activation, alpha=0.01):
    """out = dA * f'(Z), computed from the saved output A = f(Z).

    relu and leaky_relu (alpha >= 0) read the sign of Z off A; sigmoid uses
    A(1 - A) and tanh 1 - A**2. step has no useful derivative.
    """
    one = A.dtype.type(1)
    if activation == IDENTITY:
        out[...] = dA
    elif activation == RELU:
        out[...] = np.where(A > 0, dA, 0)
    elif activation == LEAKY_RELU:
        out[...] = np.where(A > 0, dA, dA * A.dtype.type(alpha))
    elif activation == SIGMOID:
        out[...] = dA * A * (one - A)
    elif activation == TANH:
        out[...] = dA * (one - A * A)
    elif activation == STEP:
        raise ValueError("the step activation has no gradient: it is forward only")
    else:
        raise ValueError(f"unknown activation code {activation}")


def dense_forward(X, W, b, out, activation, alpha=0.01):
    """out = f(X @ W + b)."""
    np.matmul(X, W, out=out)
    out += b
    activation_forward(out, out, activation, alpha)


def dense_backward(X, W, dZ, dW, db, dX=None):
    """dW = X.T @ dZ, db = dZ summed over rows, dX = dZ @ W.T (skipped if dX is None)."""
    np.matmul(X.T, dZ, out=dW)
    np.sum(dZ, axis=0, out=db)
    if dX is not None:
        np.matmul(dZ, W.T, out=dX)


def _csr_matrix(values, indices, indptr, n_columns):
    start = indptr[0]
    return scipy.sparse.csr_array((values[start:indptr[-1]], indices[start:indptr[-1]], indptr - start),
                                  shape=(len(indptr) - 1, n_columns))


def csr_dense_forward(values, indices, indptr, W, b, out, activation, alpha=0.01):
    """out = f(X @ W + b) for the sparse X of CSR arrays values, indices, indptr."""
    out[...] = _csr_matrix(values, indices, indptr, W.shape[0]) @ W
    out += b
    activation_forward(out, out, activation, alpha)


def csr_dense_backward(values, indices, indptr, dZ, dW, db):
    """dW = X.T @ dZ and db = dZ summed over rows for the sparse X of CSR arrays (a first
    layer's gradient: no input gradient)."""
    dW[...] = _csr_matrix(values, indices, indptr, dW.shape[0]).T @ dZ
    np.sum(dZ, axis=0, out=db)


def _log_softmax(Z):
    shifted = Z - Z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(Z, out):
    """Row-wise softmax, shifted by the row maximum so any finite logits stay finite."""
    out[...] = np.exp(_log_softmax(Z))


def _weights(batch, sample_weight):
    """Per-row weights normalised to sum to 1: 1/batch each, or w / sum(w).
    Rows that all weigh 0 (a mini-batch of ignored samples) stay 0: loss and
    gradient 0."""
    if sample_weight is None:
        return np.full(batch, 1.0 / batch)
    w = sample_weight.astype(np.float64)
    total = w.sum()
    return w / total if total > 0 else w


def softmax_cross_entropy(Z, labels, grad, sample_weight=None):
    """Mean cross-entropy of softmax(Z) against integer labels.

    loss = sum_i w_i (logsumexp(Z_i) - Z_i[labels_i]) with w_i = 1/batch, or
    sample_weight_i / sum(sample_weight) (0 when all weights are 0);
    grad = w_i (softmax(Z_i) - onehot_i).
    """
    batch = Z.shape[0]
    w = _weights(batch, sample_weight)
    log_p = _log_softmax(Z.astype(np.float64))
    rows = np.arange(batch)
    loss = -float(np.dot(w, log_p[rows, labels]))
    g = np.exp(log_p)
    g[rows, labels] -= 1.0
    grad[...] = g * w[:, None]
    return loss


def softmax_cross_entropy_soft(Z, target, grad, sample_weight=None):
    """Mean cross-entropy of softmax(Z) against one-hot or soft targets T.

    loss = -sum_i w_i sum_j T_ij log softmax(Z)_ij;
    grad = w_i (softmax(Z_i) * sum_j T_ij - T_i), which is softmax - T when
    the targets of a row sum to one.
    """
    w = _weights(Z.shape[0], sample_weight)
    T = target.astype(np.float64)
    log_p = _log_softmax(Z.astype(np.float64))
    loss = -float(np.dot(w, (T * log_p).sum(axis=1)))
    grad[...] = (np.exp(log_p) * T.sum(axis=1, keepdims=True) - T) * w[:, None]
    return loss


def mse(pred, target, grad, sample_weight=None):
    """Mean squared error over all elements: loss = sum_i w_i mean_j (P - T)_ij**2.

    grad = 2 w_i (P - T)_ij / n_out.
    """
    n_out = pred.shape[1]
    w = _weights(pred.shape[0], sample_weight)
    diff = pred.astype(np.float64) - target
    loss = float(np.dot(w, (diff * diff).sum(axis=1))) / n_out
    grad[...] = diff * (2.0 * w[:, None] / n_out)
    return loss


def bce_with_logits(Z, target, grad, sample_weight=None):
    """Binary cross-entropy of sigmoid(Z) against targets in [0, 1], from logits.

    Elementwise l = max(z, 0) - z t + log1p(exp(-|z|)) (stable for any z);
    loss = sum_i w_i mean_j l_ij; grad = w_i (sigmoid(z) - t) / n_out.
    """
    n_out = Z.shape[1]
    w = _weights(Z.shape[0], sample_weight)
    z = Z.astype(np.float64)
    t = target.astype(np.float64)
    elementwise = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    loss = float(np.dot(w, elementwise.sum(axis=1))) / n_out
    grad[...] = (expit(z) - t) * (w[:, None] / n_out)
    return loss


def sgd_update(params, grad, velocity, lr, momentum, nesterov, weight_decay):
    """One SGD step in place over flat buffers (PyTorch's semantics, no dampening).

    g = grad + weight_decay * params; with momentum: velocity = momentum *
    velocity + g and g = g + momentum * velocity (Nesterov) or velocity;
    params -= lr * g. velocity is left untouched when momentum is 0.
    """
    g = grad + weight_decay * params
    if momentum != 0:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    params -= (lr * g).astype(params.dtype)


def adam_update(params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam step in place (PyTorch's Adam, or AdamW when decoupled).

    step is the 1-based count including this update. Coupled weight decay adds
    weight_decay * params to the gradient; decoupled decay scales params by
    (1 - lr * weight_decay) first. Bias-corrected, with one division per parameter:
    params -= lr / (1 - beta1**step) * m / (sqrt(v) / s + eps), computed as
    lr * s / (1 - beta1**step) * m / (sqrt(v) + eps * s), s = sqrt(1 - beta2**step).
    The arithmetic is in the parameters' dtype, its constants computed in float64 and
    rounded to it once; every backend computes exactly these operations in this order.
    """
    c = params.dtype.type
    s = np.sqrt(1.0 - beta2 ** float(step))
    p = params * c(1.0 - lr * weight_decay if decoupled else 1.0)
    g = grad + c(0.0 if decoupled else weight_decay) * p
    m[...] = c(beta1) * m + c(1.0 - beta1) * g
    v[...] = c(beta2) * v + c(1.0 - beta2) * g * g
    params[...] = p - c(lr * s / (1.0 - beta1 ** float(step))) * m / (np.sqrt(v) + c(eps * s))
