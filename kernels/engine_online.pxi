# Online training (one sample per update) in the Cython engine, on one thread or several.
#
# Each thread owns a contiguous share of every layer's rows (input units) of W, with their
# b, m and v, and only it reads or writes them. Forward: each thread sums its rows' part
# of a @ W into its own scratch; after a barrier each thread adds up the parts, the bias
# and the activation for its share of the output units; another barrier before the next
# layer. Thread 0 computes the loss; a barrier. Backward: each thread computes, for its
# rows, the input gradient of those units (complete: a whole row times the delta) from the
# row before it changes, then the rows' optimizer step where their gradient is formed; a
# barrier after each layer but the input one. A small model with momentum or Adam keeps
# the rows' gradients instead and steps the thread's rows of all layers after the backward
# pass (one block on one thread); so does clipping, once the whole gradient's norm is known
# (_clipped_step); a barrier before the next sample. On one thread every barrier returns
# at once. Splitting W by columns, so that two threads wrote neighbouring parts of every
# row, made training several times slower than on one thread, and reading W by columns
# while writing it by rows moved half of it between the cores' caches every sample.

cdef inline floating _dot(const floating* x, const floating* y, Py_ssize_t n) noexcept nogil:
    """x[:n] @ y[:n], summed in whatever order vectorises (-fassociative-math)."""
    cdef Py_ssize_t j
    cdef floating total = 0
    for j in range(n):
        total += x[j] * y[j]
    return total


cdef void _forward_rows(const floating* params, Layer layer, const floating* a, floating* partial,
                        Py_ssize_t k0, Py_ssize_t k1) noexcept nogil:
    """partial[:n_out] = a[k0:k1] @ W[k0:k1] for one sample, skipping zero inputs."""
    cdef Py_ssize_t j, k, n_out = layer.n_out
    cdef const floating* row
    cdef floating ak
    for j in range(n_out):
        partial[j] = 0
    for k in range(k0, k1):
        ak = a[k]
        if ak != 0:
            row = params + layer.w + k * n_out
            for j in range(n_out):
                partial[j] += ak * row[j]


cdef void _forward_units(const floating* params, Layer layer, floating alpha, const floating* partials,
                         Py_ssize_t stride, int n_threads, floating* z, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """z[j0:j1] = f(sum of the threads' partials + b) (partials of thread u at u * stride;
    one thread's may be z itself)."""
    cdef Py_ssize_t j
    cdef int u
    cdef floating total
    cdef const floating* b = params + layer.w + layer.n_in * layer.n_out
    for j in range(j0, j1):
        total = partials[j]
        for u in range(1, n_threads):
            total += partials[u * stride + j]
        z[j] = activate(total + b[j], layer.code, alpha, False)


cdef void _backward_rows(floating* params, floating* grads, floating* state_a, floating* state_b, Layer layer,
                         const floating* a, const floating* d, floating* d_prev, int prev_code,
                         floating prev_alpha, Py_ssize_t k0, Py_ssize_t k1, int optimizer, bint plain,
                         Step c) noexcept nogil:
    """For one sample, rows k0:k1 of a layer's [W; b] (row n_in is the bias, input 1), from
    d = d(loss)/d(output): d_prev[k] = (W[k] @ d) * f'(a[k]) (the gradient at the previous
    layer's output, f its activation) from W[k] before it changes, unless d_prev is NULL;
    then the row's gradient a[k] * d into grads when grads is not NULL (to be stepped
    later), else the optimizer step of row k with it (plain SGD, without momentum or
    weight decay, skips zero inputs: their rows do not change)."""
    cdef Py_ssize_t j, k, n_out = layer.n_out
    cdef floating ak, lr = <floating>c.lr
    cdef floating* row
    if plain and grads == NULL:  # the tiny nets' hot loop: no per-row test of the mode
        for k in range(k0, min(k1, layer.n_in)):
            row = params + layer.w + k * n_out
            if d_prev != NULL:
                d_prev[k] = activation_gradient(a[k], _dot(row, d, n_out), prev_code, prev_alpha)
            ak = a[k]
            if ak != 0:
                for j in range(n_out):
                    descend(&row[j], ak * d[j], lr)
        if k1 > layer.n_in:
            row = params + layer.w + layer.n_in * n_out
            for j in range(n_out):
                descend(&row[j], d[j], lr)
        return
    if grads != NULL:  # kept for one step after the backward pass
        for k in range(k0, min(k1, layer.n_in)):
            row = params + layer.w + k * n_out
            if d_prev != NULL:
                d_prev[k] = activation_gradient(a[k], _dot(row, d, n_out), prev_code, prev_alpha)
            ak = a[k]
            row = grads + layer.w + k * n_out
            for j in range(n_out):
                row[j] = ak * d[j]
        if k1 > layer.n_in:
            row = grads + layer.w + layer.n_in * n_out
            for j in range(n_out):
                row[j] = d[j]
        return
    for k in range(k0, k1):
        row = params + layer.w + k * n_out
        ak = a[k] if k < layer.n_in else 1
        if d_prev != NULL and k < layer.n_in:
            d_prev[k] = activation_gradient(ak, _dot(row, d, n_out), prev_code, prev_alpha)
        if optimizer == SGD:
            sgd_steps(row, d, ak, state_a + layer.w + k * n_out, n_out, c)
        else:
            for j in range(n_out):
                adam_step(&row[j], ak * d[j], &state_a[layer.w + k * n_out + j], &state_b[layer.w + k * n_out + j], c)


# The largest model (its parameters' bytes) whose online gradients are kept for one block
# step: with the gradient and two moments, 4 x 8 KB fill a 32 KB L1 data cache.
cdef enum:
    KEPT_STEP_BYTES = 8192


cdef inline void _online_thread(int t, int n_threads, Shared* shared, int* phase, double* sums, floating* p,
                         floating* g, floating* sa, floating* sb, floating* backup, Py_ssize_t n_params,
                         const int64_t[:, ::1] layers, const double[::1] alphas, const Hyper* hyper, int optimizer,
                         int loss, long step, const floating[:, ::1] X, const int64_t[::1] labels,
                         const floating[:, ::1] targets, const floating[::1] weights, const int64_t* orders,
                         Py_ssize_t n_epochs, floating* a, floating* d, floating* partials, Py_ssize_t n_acts,
                         double* stats, double* losses) noexcept nogil:
    """Thread t of n_threads of the online loop of one model of the stack (its rows: p, g,
    sa, sb, backup, hyper, orders, stats: _run); phase is the thread's phase of
    shared.barrier, sums has a slot per thread. Thread 0 also keeps the backup, computes
    the loss, writes the statistics, each sample's loss in losses (unless NULL) and the
    optimizer steps taken."""
    cdef Py_ssize_t n = X.shape[0], last = layers.shape[0] - 1
    cdef Py_ssize_t epoch, sample, i, layer, k, k0, k1
    cdef Layer top = _layer(layers, last), current
    cdef bint clipped = hyper.clip_norm > 0
    cdef bint plain = (optimizer == SGD and hyper.momentum == 0 and hyper.weight_decay == 0)
    # Gradients kept for one step after the backward pass: to be clipped, or a small
    # model's (momentum, Adam), whose arrays stay in the L1 cache, so that one vectorised
    # loop replaces a short one per row; a large model steps each row where its gradient
    # is formed, without writing and reading the gradient (b1 Adam on 784-256-128-10 was
    # 12-25 % slower kept).
    cdef bint kept = clipped or (not plain and n_params * sizeof(floating) <= KEPT_STEP_BYTES)
    cdef Step c = sgd_constants(hyper)
    cdef const floating* x
    cdef const int64_t* lab
    cdef const floating* tgt
    # The threads' partial sums of the layers' outputs; one thread sums into the outputs.
    cdef floating* summed = partials if n_threads > 1 else a
    cdef floating* partial = summed + t * n_acts
    cdef double value, loss_sum = 0, metric_sum = 0
    for epoch in range(n_epochs):
        if t == 0:
            _save_backup(backup, n_params, p, sa, sb)
            loss_sum = metric_sum = 0
        fastnn_barrier_wait(&shared.barrier, phase, n_threads)
        for sample in range(n):
            i = orders[epoch * n + sample] if orders != NULL else sample
            x = &X[i, 0]
            for layer in range(last + 1):
                current = _layer(layers, layer)
                _forward_rows(p, current, x if layer == 0 else a + current.inputs, partial + current.outputs,
                              _split(current.n_in, t, n_threads), _split(current.n_in, t + 1, n_threads))
                fastnn_barrier_wait(&shared.barrier, phase, n_threads)
                _forward_units(p, current, <floating>alphas[layer], summed + current.outputs, n_acts, n_threads,
                               a + current.outputs, _split(current.n_out, t, n_threads),
                               _split(current.n_out, t + 1, n_threads))
                fastnn_barrier_wait(&shared.barrier, phase, n_threads)
            if t == 0:
                lab = &labels[i] if labels.shape[0] > 0 else NULL
                tgt = &targets[i, 0] if targets.shape[0] > 0 else NULL
                value = batch_loss(loss, a + top.outputs, 1, top.n_out, lab, tgt,
                                   &weights[i] if weights.shape[0] > 0 else NULL,
                                   weight_total(&weights[0] if weights.shape[0] > 0 else NULL, NULL, i, 1),
                                   d + top.outputs)
                if value <= LOSS_LIMIT:
                    if losses != NULL:
                        losses[epoch * n + sample] = value
                    loss_sum += value
                    metric_sum += _metric(loss, a + top.outputs, 1, top.n_out, lab, tgt)
                    if top.code != IDENTITY:
                        for k in range(top.n_out):
                            d[top.outputs + k] = activation_gradient(a[top.outputs + k], d[top.outputs + k],
                                                                     top.code, <floating>alphas[last])
                else:
                    shared.diverged, shared.epoch, shared.index, shared.value = True, epoch, sample, value
                    shared.steps = step
            fastnn_barrier_wait(&shared.barrier, phase, n_threads)
            if shared.diverged:
                return
            step += 1
            if optimizer == ADAM:
                c = adam_constants(hyper, step)
            for layer in range(last, -1, -1):
                current = _layer(layers, layer)
                _rows(current, t, n_threads, &k0, &k1)
                _backward_rows(p, g if kept else NULL, sa, sb, current, x if layer == 0 else a + current.inputs,
                               d + current.outputs, NULL if layer == 0 else d + current.inputs,
                               IDENTITY if layer == 0 else _layer(layers, layer - 1).code,
                               0 if layer == 0 else <floating>alphas[layer - 1], k0, k1, optimizer, plain, c)
                if layer > 0:  # the next layer back reads all of d_prev
                    fastnn_barrier_wait(&shared.barrier, phase, n_threads)
            if clipped:
                _clipped_step(t, n_threads, shared, phase, sums, layers, p, g, sa, sb, optimizer, c, hyper.clip_norm)
            else:
                if kept:
                    _rows_step(t, n_threads, layers, p, g, sa, sb, optimizer, c)
                # The next sample's forward pass reads all rows.
                fastnn_barrier_wait(&shared.barrier, phase, n_threads)
        if t == 0:
            stats[2 * epoch] = loss_sum
            stats[2 * epoch + 1] = metric_sum
    if t == 0:
        shared.steps = step
