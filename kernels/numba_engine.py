"""Numba training engine: whole epochs of training in one compiled call.

``run_batches`` trains with mini-batches (full batch included) through BLAS;
``run_online`` trains one sample per update with matrix-vector loops over the
flat buffers. Both take the four bundles of abi.py (fastnn/engine.py prepares
them; the Cython engine takes them too) and return what abi.py says.

Losses and SGD are the kernels of numba_kernels.py, called from here; the
activations and Adam follow the same formulas, Adam in the parameters' dtype
(adam_update computes in float64, whose divisions and square roots dominate a
float32 step): the engine and the per-module path compute the same numbers in
float64 and agree to float32 rounding in float32. Sizes are runtime integers and
workspaces are sliced to the batch's rows, so a short last batch or a new
batch size runs the same compiled code; nothing is allocated per step. Both
loops flush denormals to zero in their thread while they run (numba_fp.py).
"""
import numpy as np
from numba import njit

from .numba_cache import CACHE
from .numba_fp import flush_denormals, restore_fp
from .numba_kernels import (
    _backward,
    _forward,
    _tanh,
    bce_with_logits,
    dense_backward,
    dense_forward,
    mse,
    sgd_update,
    softmax_cross_entropy,
    softmax_cross_entropy_soft,
)
from .abi import (ACTIVATION, BCE, CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, IN_OFFSET, LEAKY_RELU, MSE, N_IN,
                  N_OUT, OUT_OFFSET, RELU, SGD, SIGMOID, W_OFFSET)
from .reference import LOSS_LIMIT

_OPTIONS = dict(cache=CACHE, nogil=True, error_model="numpy")


@njit(**_OPTIONS)
def _matrix(flat, offset, rows, cols):
    """A (rows, cols) C-contiguous view of flat starting at offset."""
    return flat[offset:offset + rows * cols].reshape(rows, cols)


@njit(**_OPTIONS)
def _weight_matrix(params, layers, layer):
    return _matrix(params, layers[layer, W_OFFSET], layers[layer, N_IN], layers[layer, N_OUT])


@njit(**_OPTIONS)
def _bias(params, layers, layer):
    start = layers[layer, W_OFFSET] + layers[layer, N_IN] * layers[layer, N_OUT]
    return params[start:start + layers[layer, N_OUT]]


@njit(**_OPTIONS)
def _inputs(acts, layers, layer, rows):
    """The layer's (rows, n_in) inputs (or their gradients, in deltas)."""
    return _matrix(acts, layers[layer, IN_OFFSET], rows, layers[layer, N_IN])


@njit(**_OPTIONS)
def _outputs(acts, layers, layer, rows):
    """The layer's (rows, n_out) outputs (or their gradients, in deltas)."""
    return _matrix(acts, layers[layer, OUT_OFFSET], rows, layers[layer, N_OUT])


@njit(**_OPTIONS)
def _save(params, state_a, state_b, backup):
    """Copy params and the optimizer state into backup (the epoch-start copy)."""
    backup[0, :] = params
    backup[1, :state_a.shape[0]] = state_a
    backup[2, :state_b.shape[0]] = state_b


@njit(inline="always", **_OPTIONS)
def _loss(loss, out, labels, targets, weights, grad):
    """Mean loss of out (rows, n_out) against labels or targets; d(loss)/d(out) into grad."""
    weighted = weights.shape[0] > 0
    if loss == CROSS_ENTROPY:
        if weighted:
            return softmax_cross_entropy(out, labels, grad, weights)
        return softmax_cross_entropy(out, labels, grad, None)
    if loss == CROSS_ENTROPY_SOFT:
        if weighted:
            return softmax_cross_entropy_soft(out, targets, grad, weights)
        return softmax_cross_entropy_soft(out, targets, grad, None)
    if loss == MSE:
        if weighted:
            return mse(out, targets, grad, weights)
        return mse(out, targets, grad, None)
    if weighted:
        return bce_with_logits(out, targets, grad, weights)
    return bce_with_logits(out, targets, grad, None)


@njit(inline="always", **_OPTIONS)
def _argmax(matrix, i):
    """The column of row i's largest entry (the first one on ties)."""
    best = 0
    for j in range(1, matrix.shape[1]):
        if matrix[i, j] > matrix[i, best]:
            best = j
    return best


@njit(inline="always", **_OPTIONS)
def _metric(loss, out, labels, targets):
    """The batch's metric times its rows: correct rows (cross-entropy), matching
    outputs / n_out (BCE), or rows * mean over outputs of R² (MSE); as Loss.score."""
    rows, cols = out.shape
    total = 0.0
    if loss == CROSS_ENTROPY:
        for i in range(rows):
            total += _argmax(out, i) == labels[i]
    elif loss == CROSS_ENTROPY_SOFT:
        for i in range(rows):
            total += _argmax(out, i) == _argmax(targets, i)
    elif loss == BCE:
        for i in range(rows):
            for j in range(cols):
                total += (out[i, j] > 0) == (targets[i, j] > 0.5)
        total /= cols
    else:
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
        total *= rows / cols
    return total


@njit(**_OPTIONS)
def _clip(grads, max_norm):
    """Scale grads so that their global L2 norm is at most max_norm."""
    norm = 0.0
    for k in range(grads.shape[0]):
        norm += np.float64(grads[k]) * np.float64(grads[k])
    norm = np.sqrt(norm)
    if norm > max_norm:
        scale = grads.dtype.type(max_norm / norm)
        for k in range(grads.shape[0]):
            grads[k] *= scale


@njit(**_OPTIONS)
def _adam(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam/AdamW step: adam_update's formula computed in the params' dtype (float32
    stays float32, vectorised 16 wide), with one division per parameter instead of two:
    lr / (1 - beta1^t) * m / (sqrt(v) / s + eps) = lr * s / (1 - beta1^t) * m / (sqrt(v) + eps * s),
    s = sqrt(1 - beta2^t)."""
    c = params.dtype.type
    shrink = c(1.0 - lr * weight_decay if decoupled else 1.0)
    l2 = c(0.0 if decoupled else weight_decay)
    b1, b2, keep1, keep2 = c(beta1), c(beta2), c(1.0 - beta1), c(1.0 - beta2)
    sqrt_bias2 = np.sqrt(1.0 - beta2 ** step)
    step_size = c(lr * sqrt_bias2 / (1.0 - beta1 ** step))
    eps_ = c(eps * sqrt_bias2)
    for k in range(params.shape[0]):
        p = params[k] * shrink
        g = grads[k] + l2 * p
        m_k = b1 * m[k] + keep1 * g
        v_k = b2 * v[k] + keep2 * g * g
        m[k] = m_k
        v[k] = v_k
        params[k] = p - step_size * m_k / (np.sqrt(v_k) + eps_)


@njit(**_OPTIONS)
def _update(params, grads, state_a, state_b, hyper, optimizer, step):
    """Clip (if set) and apply one optimizer step; hyper is one abi.HYPER record, step
    counts this update."""
    if hyper.clip_norm > 0:
        _clip(grads, hyper.clip_norm)
    if optimizer == SGD:
        sgd_update(params, grads, state_a, hyper.lr, hyper.momentum, hyper.nesterov != 0, hyper.weight_decay)
    else:
        _adam(params, grads, state_a, state_b, step, hyper.lr, hyper.beta1, hyper.beta2,
              hyper.eps, hyper.weight_decay, hyper.decoupled != 0)


@njit(inline="always", **_OPTIONS)
def _gather(order, lo, rows, X, labels, targets, weights, xwork, lwork, twork, wwork):
    """Copy samples order[lo:lo + rows] (samples lo:lo + rows when order is empty)
    into the first rows of the workspaces."""
    for r in range(rows):
        i = order[lo + r] if order.shape[0] > 0 else lo + r
        for j in range(X.shape[1]):  # element by element: a row view would cost reference counting
            xwork[r, j] = X[i, j]
        if labels.shape[0] > 0:
            lwork[r] = labels[i]
        for j in range(targets.shape[1] if targets.shape[0] > 0 else 0):
            twork[r, j] = targets[i, j]
        if weights.shape[0] > 0:
            wwork[r] = weights[i]


@njit(**_OPTIONS)
def _run_batches(model, data, work, run):
    """Mini-batch training for run.n_epochs: the bundles and result of abi.py."""
    params, grads, state_a, state_b, layers, alphas, hypers = model
    X, labels, targets, weights, orders = data
    acts, deltas, twork, wwork, lwork, backup, stats = work
    optimizer, loss, step, n_epochs, batch, _ = run
    hyper = hypers[0]
    n = X.shape[0]
    last = layers.shape[0] - 1
    weighted = weights.shape[0] > 0
    in_order = orders.reshape(orders.size)[:0]
    for epoch in range(n_epochs):
        _save(params, state_a, state_b, backup)
        order = orders[epoch] if orders.shape[0] > 0 else in_order
        loss_sum = metric_sum = 0.0
        for index in range((n + batch - 1) // batch):
            lo = index * batch
            rows = min(batch, n - lo)
            if order.shape[0] > 0:
                x = _inputs(acts, layers, 0, rows)
                _gather(order, lo, rows, X, labels, targets, weights, x, lwork, twork, wwork)
                lab, tgt = lwork[:rows], twork[:rows]
                wgt = wwork[:rows] if weighted else weights
            else:
                x, lab, tgt = X[lo:lo + rows], labels[lo:lo + rows], targets[lo:lo + rows]
                wgt = weights[lo:lo + rows]
            a = x
            for layer in range(last + 1):
                out = _outputs(acts, layers, layer, rows)
                dense_forward(a, _weight_matrix(params, layers, layer), _bias(params, layers, layer), out,
                              layers[layer, ACTIVATION], alphas[layer])
                a = out
            delta = _outputs(deltas, layers, last, rows)
            value = _loss(loss, a, lab, tgt, wgt, delta)
            if not value <= LOSS_LIMIT:  # NaN, inf or diverging
                return epoch, index, step, value
            loss_sum += value * rows
            metric_sum += _metric(loss, a, lab, tgt)
            for layer in range(last, -1, -1):
                delta = _outputs(deltas, layers, layer, rows)
                code = layers[layer, ACTIVATION]
                if code != IDENTITY:
                    _backward(_outputs(acts, layers, layer, rows), delta, delta, code, alphas[layer])
                W = _weight_matrix(params, layers, layer)
                dW = _weight_matrix(grads, layers, layer)
                db = _bias(grads, layers, layer)
                if layer == 0:
                    dense_backward(x, W, delta, dW, db, None)
                else:
                    dense_backward(_inputs(acts, layers, layer, rows), W, delta, dW, db,
                                   _inputs(deltas, layers, layer, rows))
            step += 1
            _update(params, grads, state_a, state_b, hyper, optimizer, step)
        stats[epoch, 0] = loss_sum
        stats[epoch, 1] = metric_sum
    return n_epochs, 0, step, 0.0


@njit(inline="always", **_OPTIONS)
def _activate(z, code, alpha):
    """f(z) for one activation code, by the formulas of numba_kernels._forward."""
    c = type(z)
    if code == RELU:
        return c(0) if z < c(0) else z
    if code == LEAKY_RELU:
        return z if z > c(0) else z * c(alpha)
    if code == SIGMOID:
        e = np.exp(-abs(z))
        s = c(1) / (c(1) + e)
        return s if z >= c(0) else e * s
    if code == IDENTITY:
        return z
    return _tanh(z)


@njit(inline="always", **_OPTIONS)
def _activation_gradient(a, d, code, alpha):
    """d * f'(z) from a = f(z), by the formulas of numba_kernels._backward."""
    c = type(a)
    if code == RELU:
        return d if a > c(0) else c(0)
    if code == LEAKY_RELU:
        return d if a > c(0) else d * c(alpha)
    if code == SIGMOID:
        return d * a * (c(1) - a)
    if code == IDENTITY:
        return d
    return d * (c(1) - a * a)


# The per-sample helpers index the flat buffers directly: views would cost two atomic
# reference-count updates each, which dominate small layers. The offsets are unsigned so
# that Numba drops its negative-index wraparound check and LLVM vectorises the row loops.
@njit(inline="always", **_OPTIONS)
def _layout(layers, layer):
    """(W offset, n_in, n_out, input offset, output offset) of a layer, unsigned."""
    u = np.uint64
    return (u(layers[layer, W_OFFSET]), u(layers[layer, N_IN]), u(layers[layer, N_OUT]),
            u(layers[layer, IN_OFFSET]), u(layers[layer, OUT_OFFSET]))


@njit(fastmath={"reassoc"}, **_OPTIONS)
def _dot(x, x_start, y, y_start, n):
    """sum_j x[x_start + j] * y[y_start + j] for j < n, summed in whatever order
    vectorises (as BLAS does for the per-module path's products)."""
    total = x.dtype.type(0)
    for j in range(n):
        total += x[x_start + j] * y[y_start + j]
    return total


@njit(inline="always", **_OPTIONS)
def _forward_one(params, layers, alphas, layer, acts):
    """One sample through one layer: out = f(a @ W + b), a row of W at a time,
    skipping zero inputs (such as relu's)."""
    w, n_in, n_out, a, z = _layout(layers, layer)
    for j in range(n_out):
        acts[z + j] = 0
    for k in range(n_in):
        ak = acts[a + k]
        if ak != 0:
            row = w + k * n_out
            for j in range(n_out):
                acts[z + j] += ak * params[row + j]
    code, alpha, b = layers[layer, ACTIVATION], alphas[layer], w + n_in * n_out
    for j in range(n_out):
        acts[z + j] = _activate(acts[z + j] + params[b + j], code, alpha)


@njit(inline="always", **_OPTIONS)
def _backward_one(params, grads, layers, alphas, layer, acts, deltas, lr, in_place):
    """One sample back through one layer, from d(loss)/d(output) in deltas: the input
    gradient d @ W.T (except for the first layer) from each row of W before it changes,
    then either the SGD step W -= lr * outer(a, d), b -= lr * d in place (in_place) or
    the gradient outer(a, d), d into grads."""
    w, n_in, n_out, a, z = _layout(layers, layer)
    code, alpha, b = layers[layer, ACTIVATION], alphas[layer], w + n_in * n_out
    if code != IDENTITY:
        for j in range(n_out):
            deltas[z + j] = _activation_gradient(acts[z + j], deltas[z + j], code, alpha)
    for k in range(n_in):
        row = w + k * n_out
        if layer > 0:
            deltas[a + k] = _dot(params, row, deltas, z, n_out)
        ak = acts[a + k]
        if not in_place:
            for j in range(n_out):
                grads[row + j] = ak * deltas[z + j]
        elif ak != 0:
            for j in range(n_out):
                params[row + j] -= lr * (ak * deltas[z + j])
    for j in range(n_out):
        if in_place:
            params[b + j] -= lr * deltas[z + j]
        else:
            grads[b + j] = deltas[z + j]


@njit(**_OPTIONS)
def _run_online(model, data, work, run):
    """Online training (batch 1) for run.n_epochs: the bundles and result of abi.py. Plain SGD (no
    momentum, weight decay or clipping) updates the weights in place as it goes back
    through the layers, without forming the gradient; other optimizers get the gradient."""
    params, grads, state_a, state_b, layers, alphas, hypers = model
    X, labels, targets, weights, orders = data
    acts, deltas, twork, wwork, lwork, backup, stats = work
    optimizer, loss, step, n_epochs, batch, _ = run
    hyper = hypers[0]
    n = X.shape[0]
    last = layers.shape[0] - 1
    in_place = optimizer == SGD and hyper.momentum == 0 and hyper.weight_decay == 0 and hyper.clip_norm == 0
    lr = params.dtype.type(hyper.lr)
    x = _inputs(acts, layers, 0, 1)
    out = _outputs(acts, layers, last, 1)
    delta = _outputs(deltas, layers, last, 1)
    lab, tgt = lwork[:1], twork[:1]
    wgt = wwork[:1] if weights.shape[0] > 0 else weights
    in_order = orders.reshape(orders.size)[:0]
    for epoch in range(n_epochs):
        _save(params, state_a, state_b, backup)
        order = orders[epoch] if orders.shape[0] > 0 else in_order
        loss_sum = metric_sum = 0.0
        for t in range(n):
            _gather(order, t, 1, X, labels, targets, weights, x, lwork, twork, wwork)
            for layer in range(last + 1):
                _forward_one(params, layers, alphas, layer, acts)
            value = _loss(loss, out, lab, tgt, wgt, delta)
            if not value <= LOSS_LIMIT:  # NaN, inf or diverging
                return epoch, t, step, value
            loss_sum += value
            metric_sum += _metric(loss, out, lab, tgt)
            for layer in range(last, -1, -1):
                _backward_one(params, grads, layers, alphas, layer, acts, deltas, lr, in_place)
            step += 1
            if not in_place:
                _update(params, grads, state_a, state_b, hyper, optimizer, step)
        stats[epoch, 0] = loss_sum
        stats[epoch, 1] = metric_sum
    return n_epochs, 0, step, 0.0


def _flushing_denormals(run):
    """run with denormals flushed to zero in the calling thread (numba_fp.py), as the
    Cython engine trains; set by separate compiled calls, so that no floating-point
    operation of run can be moved across the switch."""
    def run_flushing(*args):
        previous = flush_denormals()
        try:
            return run(*args)
        finally:
            restore_fp(previous)

    run_flushing.__name__, run_flushing.__doc__ = run.__name__.lstrip("_"), run.__doc__
    run_flushing.compiled = run
    return run_flushing


run_batches = _flushing_denormals(_run_batches)
run_online = _flushing_denormals(_run_online)
