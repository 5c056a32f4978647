"""Numba training engine: whole epochs of training in one compiled call.

``run_batches`` trains with mini-batches (full batch included) through BLAS;
``run_online`` trains one sample per update with matrix-vector loops over the
flat buffers. Both take the four bundles of abi.py (fastnn/engine.py prepares
them; the Cython engine takes them too) and train the stack of models they hold
one model after another, each by the loop of one model (_batches_one,
_online_one).

Mini-batches go through the kernels of numba_kernels.py (products, activations,
losses, optimizer steps); the online loop applies their element functions
(numba_scalar.py) itself. The engine and the per-module path therefore compute
the same numbers, bit for bit in mini-batches on one thread; online, the
products sum in another order than BLAS's. Sizes are runtime integers and
workspaces are sliced to the batch's rows, so a short last batch or a new
batch size runs the same compiled code; nothing is allocated per step. Both
loops flush denormals to zero in their thread while they run (numba_fp.py).
"""
import numpy as np
from numba import njit

try:  # Numba's own key of argument types (internal: absent, fastnn.engine.compiles types in Python)
    from numba._dispatcher import compute_fingerprint
except ImportError:
    compute_fingerprint = None

from .numba_cache import CACHE
from .numba_fp import flush_denormals, restore_fp
from .numba_kernels import (
    _backward,
    adam_update,
    bce_with_logits,
    csr_dense_backward,
    csr_dense_forward,
    dense_backward,
    dense_forward,
    mse,
    sgd_update,
    softmax_cross_entropy,
    softmax_cross_entropy_soft,
)
from .numba_scalar import activate, activation_gradient, descend, metric_row, r2_sum
from .abi import (ACTIVATION, CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, IN_OFFSET, MSE, N_IN, N_OUT, OUT_OFFSET,
                  SGD, W_OFFSET)
from .reference import LOSS_LIMIT

_OPTIONS = dict(cache=CACHE, nogil=True, error_model="numpy")
# The largest batches whose first layer fastnn/engine.py multiplies entry by entry when X
# is sparse enough, on one thread: a model alone, and each of a stack's models on threads
# of their own (measured on the MNIST digits, docs/engine.md: alone, batch 8 1.23x, 16
# 1.04x, and 1.21x at 16 beside a second such process, as in a sweep, 32 0.87x; stacked,
# batch 8 1.41x, 16 1.21x, 32 0.97x).
CSR_MAX_BATCH = 16
CSR_MAX_BATCH_STACKED = 16
# A mini-batch step applies the optimizer layer by layer, as each gradient is done, from
# this many bytes of parameters; below, in one pass after the last. By layer against one
# pass (one thread, Intel Xeon): 784-256-128-10 float32 batch 8 1.04x, float64 batch 16
# 1.03x, batch 32 Adam 1.02x, SGD 1.00x; 784-64-32-10 batch 8 1.01x; 2-5-5-5-2 batch 8 0.97x.
BY_LAYER_BYTES = 16384


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
def _metric(loss, out, labels, targets):
    """The batch's metric times its rows, as Loss.score: correct rows (cross-entropy),
    matching outputs / n_out (BCE), or rows * mean over outputs of R² (MSE)."""
    if loss == MSE:
        return r2_sum(out, targets)
    total = 0.0
    for i in range(out.shape[0]):
        total += metric_row(loss, out, labels, targets, i)
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
def _update(params, grads, state_a, state_b, hyper, optimizer, step):
    """Clip (if set) and apply one optimizer step by the kernels of numba_kernels.py; hyper
    is one abi.HYPER record, step counts this update."""
    if hyper.clip_norm > 0:
        _clip(grads, hyper.clip_norm)
    if optimizer == SGD:
        sgd_update(params, grads, state_a, hyper.lr, hyper.momentum, hyper.nesterov != 0, hyper.weight_decay)
    else:
        adam_update(params, grads, state_a, state_b, step, hyper.lr, hyper.beta1, hyper.beta2, hyper.eps,
                    hyper.weight_decay, hyper.decoupled != 0)


@njit(inline="always", **_OPTIONS)
def _gather(order, lo, rows, X, labels, targets, weights, xwork, lwork, twork, wwork):
    """Copy samples order[lo:lo + rows] (samples lo:lo + rows when order is empty)
    into the first rows of the workspaces."""
    for r in range(rows):
        i = order[lo + r] if order.shape[0] > 0 else lo + r
        for j in range(X.shape[1] if X.shape[0] > 0 else 0):  # element by element: a row view would cost
            xwork[r, j] = X[i, j]                              # reference counting
        if labels.shape[0] > 0:
            lwork[r] = labels[i]
        for j in range(targets.shape[1] if targets.shape[0] > 0 else 0):
            twork[r, j] = targets[i, j]
        if weights.shape[0] > 0:
            wwork[r] = weights[i]


@njit(inline="always", **_OPTIONS)
def _sparse_batch(order, lo, rows, data, work, x, densify):
    """A sparse X's batch of samples order[lo:lo + rows] (lo:lo + rows when order is empty):
    with densify, written densely into x (rows, n_in); else as CSR arrays (values,
    indices, indptr), the data's own in order, else gathered into the work's."""
    values, indices, indptr = data.values, data.indices, data.indptr
    if densify:
        x[:, :] = 0
        for r in range(rows):
            i = order[lo + r] if order.shape[0] > 0 else lo + r
            for p in range(indptr[i], indptr[i + 1]):
                x[r, indices[p]] += values[p]
        return values, indices, indptr
    if order.shape[0] == 0:
        return values, indices, indptr[lo:lo + rows + 1]
    n_entries = 0
    work.sindptr[0] = 0
    for r in range(rows):
        i = order[lo + r]
        for p in range(indptr[i], indptr[i + 1]):
            work.svalues[n_entries] = values[p]
            work.sindices[n_entries] = indices[p]
            n_entries += 1
        work.sindptr[r + 1] = n_entries
    return work.svalues, work.sindices, work.sindptr[:rows + 1]


@njit(inline="always", **_OPTIONS)
def _n_samples(data):
    return data.indptr.shape[0] - 1 if data.indptr.shape[0] > 0 else data.X.shape[0]


@njit(inline="always", **_OPTIONS)
def _model_orders(orders, k):
    """Model k's (n_epochs, n) sample orders, (0, 0) for training in order (abi.py)."""
    if orders.shape[0] == 0:
        return orders.reshape((0, 0))
    return orders[k if orders.shape[0] > 1 else 0]


@njit(inline="always", **_OPTIONS)
def _each_model(train, model, data, work, run):
    """Train every active model of the stack in turn with train (one model's loop, taking
    its row of each per-model array) and record its outcome in work.done, failed_batch and
    failed_loss."""
    for k in range(model.params.shape[0]):
        work.done[k] = 0
        if model.active[k] == 0:
            continue
        done, index, step, value = train(model.params[k], model.grads[k], model.state_a[k], model.state_b[k],
                                         model.hyper[k], model.steps[k], model.layers, model.alphas, data,
                                         _model_orders(data.orders, k), work, work.backup[k], work.stats[k],
                                         work.update_losses[k], run)
        work.done[k], work.failed_batch[k], work.failed_loss[k], model.steps[k] = done, index, value, step


@njit(**_OPTIONS)
def _batches_one(params, grads, state_a, state_b, hyper, step, layers, alphas, data, orders, work, backup,
                 stats, update_losses, run):
    """One model's mini-batch training for run.n_epochs; returns (epochs completed, batch
    index, optimizer steps, loss) as abi.py describes per model, and records each update's
    loss in update_losses (n_epochs, n_batches) unless it is empty."""
    X, labels, targets, weights = data.X, data.labels, data.targets, data.weights
    acts, deltas, loss, batch = work.acts, work.deltas, run.loss, run.batch
    n = _n_samples(data)
    sparse = data.indptr.shape[0] > 0
    csr = sparse and run.sparse_product != 0
    last = layers.shape[0] - 1
    weighted = weights.shape[0] > 0
    recording = update_losses.shape[0] > 0
    in_order = orders.reshape(orders.size)[:0]
    for epoch in range(run.n_epochs):
        _save(params, state_a, state_b, backup)
        order = orders[epoch] if orders.shape[0] > 0 else in_order
        loss_sum = metric_sum = 0.0
        for index in range((n + batch - 1) // batch):
            lo = index * batch
            rows = min(batch, n - lo)
            if order.shape[0] > 0:
                x = _inputs(acts, layers, 0, rows)
                _gather(order, lo, rows, X, labels, targets, weights, x, work.lwork, work.twork, work.wwork)
                lab, tgt = work.lwork[:rows], work.twork[:rows]
                wgt = work.wwork[:rows] if weighted else weights
            else:
                x, lab, tgt = X[lo:lo + rows], labels[lo:lo + rows], targets[lo:lo + rows]
                wgt = weights[lo:lo + rows]
            if sparse:
                x = _inputs(acts, layers, 0, rows)
                values, indices, indptr = _sparse_batch(order, lo, rows, data, work, x, not csr)
            a = x
            for layer in range(last + 1):
                out = _outputs(acts, layers, layer, rows)
                W, b, code = _weight_matrix(params, layers, layer), _bias(params, layers, layer), layers[layer, ACTIVATION]
                if layer == 0 and csr:
                    csr_dense_forward(values, indices, indptr, W, b, out, code, alphas[layer])
                else:
                    dense_forward(a, W, b, out, code, alphas[layer])
                a = out
            delta = _outputs(deltas, layers, last, rows)
            value = _loss(loss, a, lab, tgt, wgt, delta)
            if not value <= LOSS_LIMIT:  # NaN, inf or diverging
                return epoch, index, step, value
            if recording:
                update_losses[epoch, index] = value
            loss_sum += value * rows
            metric_sum += _metric(loss, a, lab, tgt)
            step += 1
            # Without clipping (which needs the whole gradient) each layer steps as soon as
            # its dW and its dX (from the old W) are done: W, dW and the state are still in
            # cache, and the first layer's W, which the next batch reads first, is written
            # last. Parameters of fewer than BY_LAYER_BYTES stay in cache anyway.
            by_layer = not hyper.clip_norm > 0 and params.shape[0] * params.itemsize >= BY_LAYER_BYTES
            for layer in range(last, -1, -1):
                delta = _outputs(deltas, layers, layer, rows)
                code = layers[layer, ACTIVATION]
                if code != IDENTITY:
                    _backward(_outputs(acts, layers, layer, rows), delta, delta, code, alphas[layer])
                W = _weight_matrix(params, layers, layer)
                dW = _weight_matrix(grads, layers, layer)
                db = _bias(grads, layers, layer)
                if layer == 0 and csr:
                    csr_dense_backward(values, indices, indptr, delta, dW, db)
                elif layer == 0:
                    dense_backward(x, W, delta, dW, db, None)
                else:
                    dense_backward(_inputs(acts, layers, layer, rows), W, delta, dW, db,
                                   _inputs(deltas, layers, layer, rows))
                if by_layer:  # W and b, then the next layer's: one slice (an empty state stays empty)
                    lo_p = layers[layer, W_OFFSET]
                    hi_p = lo_p + (layers[layer, N_IN] + 1) * layers[layer, N_OUT]
                    _update(params[lo_p:hi_p], grads[lo_p:hi_p], state_a[lo_p:hi_p], state_b[lo_p:hi_p], hyper,
                            run.optimizer, step)
            if not by_layer:
                _update(params, grads, state_a, state_b, hyper, run.optimizer, step)
        stats[epoch, 0] = loss_sum
        stats[epoch, 1] = metric_sum
    return run.n_epochs, 0, step, 0.0


@njit(**_OPTIONS)
def _run_batches(model, data, work, run):
    """Mini-batch training of the stack for run.n_epochs: the bundles of abi.py."""
    _each_model(_batches_one, model, data, work, run)


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
        acts[z + j] = activate(acts[z + j] + params[b + j], code, alpha)


@njit(inline="always", **_OPTIONS)
def _backward_one(params, grads, layers, alphas, layer, acts, deltas, hyper, in_place):
    """One sample back through one layer, from d(loss)/d(output) in deltas: the input
    gradient d @ W.T (except for the first layer) from each row of W before it changes,
    then either the SGD step W -= lr * outer(a, d), b -= lr * d in place (in_place, with
    the lr of the abi.HYPER record hyper) or the gradient outer(a, d), d into grads."""
    lr = params.dtype.type(hyper.lr)
    w, n_in, n_out, a, z = _layout(layers, layer)
    code, alpha, b = layers[layer, ACTIVATION], alphas[layer], w + n_in * n_out
    if code != IDENTITY:
        for j in range(n_out):
            deltas[z + j] = activation_gradient(acts[z + j], deltas[z + j], code, alpha)
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
                params[row + j] = descend(params[row + j], ak * deltas[z + j], lr)
    for j in range(n_out):
        if in_place:
            params[b + j] = descend(params[b + j], deltas[z + j], lr)
        else:
            grads[b + j] = deltas[z + j]


@njit(inline="always", **_OPTIONS)
def _in_place(optimizer, hyper):
    """Whether _backward_one applies the optimizer's step itself: plain SGD (no momentum,
    weight decay or clipping), whose step needs nothing but each weight's gradient."""
    return optimizer == SGD and hyper.momentum == 0 and hyper.weight_decay == 0 and hyper.clip_norm == 0


@njit(**_OPTIONS)
def _online_one(params, grads, state_a, state_b, hyper, step, layers, alphas, data, orders, work, backup,
                stats, update_losses, run):
    """One model's online training (batch 1) for run.n_epochs; returns what _batches_one
    does. Plain SGD (no momentum, weight decay or clipping) updates the weights in place
    as it goes back through the layers, without forming the gradient; other optimizers get
    the gradient."""
    X, labels, targets, weights = data.X, data.labels, data.targets, data.weights
    lwork, twork, wwork, loss = work.lwork, work.twork, work.wwork, run.loss
    n = X.shape[0]
    last = layers.shape[0] - 1
    in_place = _in_place(run.optimizer, hyper)
    x = _inputs(work.acts, layers, 0, 1)
    out = _outputs(work.acts, layers, last, 1)
    delta = _outputs(work.deltas, layers, last, 1)
    lab, tgt = lwork[:1], twork[:1]
    wgt = wwork[:1] if weights.shape[0] > 0 else weights
    recording = update_losses.shape[0] > 0
    in_order = orders.reshape(orders.size)[:0]
    for epoch in range(run.n_epochs):
        _save(params, state_a, state_b, backup)
        order = orders[epoch] if orders.shape[0] > 0 else in_order
        loss_sum = metric_sum = 0.0
        for t in range(n):
            _gather(order, t, 1, X, labels, targets, weights, x, lwork, twork, wwork)
            for layer in range(last + 1):
                _forward_one(params, layers, alphas, layer, work.acts)
            value = _loss(loss, out, lab, tgt, wgt, delta)
            if not value <= LOSS_LIMIT:  # NaN, inf or diverging
                return epoch, t, step, value
            if recording:
                update_losses[epoch, t] = value
            loss_sum += value
            metric_sum += _metric(loss, out, lab, tgt)
            for layer in range(last, -1, -1):
                _backward_one(params, grads, layers, alphas, layer, work.acts, work.deltas, hyper, in_place)
            step += 1
            if not in_place:
                _update(params, grads, state_a, state_b, hyper, run.optimizer, step)
        stats[epoch, 0] = loss_sum
        stats[epoch, 1] = metric_sum
    return run.n_epochs, 0, step, 0.0


@njit(**_OPTIONS)
def _run_online(model, data, work, run):
    """Online training of the stack (batch 1) for run.n_epochs: the bundles of abi.py."""
    _each_model(_online_one, model, data, work, run)


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
    # The key of the argument types that Numba's dispatcher computes in C on every call.
    if compute_fingerprint is not None:
        run_flushing.types_key = compute_fingerprint
    return run_flushing


run_batches = _flushing_denormals(_run_batches)
run_online = _flushing_denormals(_run_online)
