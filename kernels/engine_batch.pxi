# Mini-batch and full-batch training in the Cython engine, on one thread or several.
#
# As in the online loop, each thread owns a contiguous share of every layer's rows (input
# units) of [W; b]; the matrix products are split between the threads, each making its own
# BLAS calls with BLAS on one thread. Forward, per layer: each thread computes its share of
# the output units (columns of z) for all batch rows; a barrier. The loss: each thread takes
# a share of the batch's rows; a barrier, after which every thread knows the batch's loss
# (and stops on a non-finite one before any update). Backward, per layer: each thread
# computes, from its rows of W only, their columns of the delta at the previous layer and
# their gradient, and applies the optimizer to them at once; a barrier. A step thus meets
# at 2 x layers + 1 barriers instead of starting and stopping BLAS's threads in every
# product, each thread packs only its share of W for BLAS, and the optimizer's pass over
# the parameters is shared too (splitting the batch's rows instead made batch 32 of
# 784-256-128-10 30 % slower: both threads packed all of W for every product). With
# clipping the optimizer waits for the whole gradient (_clipped_step). On one thread every
# barrier returns at once and BLAS may run threads of its own.


cdef inline Py_ssize_t _runs(Py_ssize_t rows, Py_ssize_t width, Py_ssize_t j0, Py_ssize_t j1,
                             Py_ssize_t* length) noexcept nogil:
    """Columns j0:j1 of a rows x width block as runs of contiguous elements, run i at row i:
    one run of rows * width elements when they are every column, else a run of j1 - j0 per
    row. Returns the number of runs and sets length. (A tiny net's layers are a few
    columns wide: a loop per row spent more on starting its vector loop than in it.)"""
    if j1 - j0 == width:
        length[0] = rows * width
        return 1
    length[0] = j1 - j0
    return rows


cdef void _forward_batch(floating* params, Layer layer, floating alpha, const floating* a,
                         floating* z, Py_ssize_t rows, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Columns j0:j1 of z = f(a @ W + b) for rows rows: one GEMM, then bias and activation."""
    cdef Py_ssize_t i, j, length, n_out = layer.n_out
    cdef const floating* b = params + layer.w + layer.n_in * n_out
    if j1 <= j0:
        return
    gemm_ptr(False, False, rows, j1 - j0, layer.n_in, a, layer.n_in, params + layer.w + j0, n_out, z + j0, n_out)
    for i in range(rows):
        for j in range(j0, j1):
            z[i * n_out + j] += b[j]
    for i in range(_runs(rows, n_out, j0, j1, &length)):
        activate_all(z + i * n_out + j0, z + i * n_out + j0, length, layer.code, alpha)


cdef void _csr_forward_batch(floating* params, Layer layer, floating alpha, const floating* values,
                             const int64_t* indices, const int64_t* indptr, floating* z, Py_ssize_t rows,
                             Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Columns j0:j1 of z = f(X @ W + b) for the first layer's sparse batch X (CSR arrays):
    each stored entry adds its row of W."""
    cdef Py_ssize_t i, j, n_out = layer.n_out
    cdef const floating* b = params + layer.w + layer.n_in * n_out
    if j1 <= j0:
        return
    for i in range(rows):
        for j in range(j0, j1):
            z[i * n_out + j] = b[j]
        csr_row_product(values, indices, indptr[i], indptr[i + 1], params + layer.w, n_out, z + i * n_out, j0, j1)
        activate_all(z + i * n_out + j0, z + i * n_out + j0, j1 - j0, layer.code, alpha)


cdef void _csr_backward_share(floating* grads, Layer layer, const floating* values, const int64_t* indices,
                              const int64_t* indptr, const floating* d, Py_ssize_t rows, Py_ssize_t k0,
                              Py_ssize_t k1) noexcept nogil:
    """Rows k0:k1 of the first layer's gradient [dW; db] (row n_in is db) for its sparse
    batch X (CSR arrays): X.T @ d from the stored entries in columns k0:k1, column sums of d."""
    cdef Py_ssize_t i, n_in = layer.n_in, n_out = layer.n_out
    cdef Py_ssize_t k_end = min(k1, n_in)
    cdef floating* db = grads + layer.w + n_in * n_out
    if k_end > k0:
        memset(grads + layer.w + k0 * n_out, 0, (k_end - k0) * n_out * sizeof(floating))
        for i in range(rows):
            csr_row_gradient(values, indices, indptr[i], indptr[i + 1], d + i * n_out, n_out, grads + layer.w, k0,
                             k_end)
    if k1 > n_in:
        _bias_gradient(db, d, rows, n_out)


cdef void _bias_gradient(floating* db, const floating* d, Py_ssize_t rows, Py_ssize_t n_out) noexcept nogil:
    """db = column sums of d (rows x n_out), added row by row."""
    cdef Py_ssize_t i, j
    for j in range(n_out):
        db[j] = 0
    for i in range(rows):
        for j in range(n_out):
            db[j] += d[i * n_out + j]


cdef void _activation_gradients(floating* d, const floating* a, Py_ssize_t n, int code,
                                floating alpha) noexcept nogil:
    """d[:n] *= f'(z), from a = f(z)."""
    activation_gradient_all(a, d, d, n, code, alpha)


cdef void _backward_share(floating* params, floating* grads, Layer layer, const floating* a, const floating* d,
                          floating* d_prev, int prev_code, floating prev_alpha, Py_ssize_t rows,
                          Py_ssize_t k0, Py_ssize_t k1) noexcept nogil:
    """Rows k0:k1 of one layer's [W; b] (row n_in is b) in the backward pass over a batch
    of ``rows`` rows, from d = d(loss)/dz (z = a @ W + b, before the activation): columns
    k0:k1 of d_prev = (d @ W.T) * f'(a) unless d_prev is NULL (f the previous layer's
    activation, a = f(its z)), and the gradient of those rows: a.T @ d, column sums of d."""
    cdef Py_ssize_t i, length, n_in = layer.n_in, n_out = layer.n_out
    cdef Py_ssize_t k_end = min(k1, n_in)
    cdef floating* db = grads + layer.w + n_in * n_out
    if k_end > k0:
        if d_prev != NULL:
            gemm_ptr(False, True, rows, k_end - k0, n_out, d, n_out, params + layer.w + k0 * n_out, n_out,
                     d_prev + k0, n_in)
            for i in range(_runs(rows, n_in, k0, k_end, &length)):
                _activation_gradients(d_prev + i * n_in + k0, a + i * n_in + k0, length, prev_code, prev_alpha)
        gemm_ptr(True, False, k_end - k0, n_out, rows, a + k0, n_in, d, n_out, grads + layer.w + k0 * n_out, n_out)
    if k1 > n_in:
        _bias_gradient(db, d, rows, n_out)



cdef void _batch_thread(int t, int n_threads, Shared* shared, int* phase, double* sums, floating* p,
                        floating* g, floating* sa, floating* sb, floating* backup, Py_ssize_t n_params,
                        const int64_t[:, ::1] layers, const double[::1] alphas, const Hyper* hyper, int optimizer,
                        int loss, long step, const floating[:, ::1] X, const int64_t[::1] labels,
                        const floating[:, ::1] targets, const floating[::1] weights, const int64_t* orders,
                        Py_ssize_t n_epochs, Py_ssize_t batch, floating* a, floating* d, floating* twork,
                        floating* wwork, int64_t* lwork, const Sparse* sparse, double* stats,
                        double* losses) noexcept nogil:
    """Thread t of n_threads of the mini-batch loop of one model of the stack (its rows: p,
    g, sa, sb, backup, hyper, orders, stats: _run); phase is the thread's phase of
    shared.barrier, sums has a slot per thread. Thread 0 also keeps the backup, computes
    the metric, writes the statistics, each batch's loss in losses (unless NULL) and the
    optimizer steps taken. A sparse X (sparse.indptr not NULL) comes in a batch of CSR
    arrays that thread 0 gathers, or densified into a, each thread its rows."""
    cdef bint is_sparse = sparse.indptr != NULL
    cdef bint csr = is_sparse and sparse.product
    cdef Py_ssize_t n = sparse.n if is_sparse else X.shape[0], n_in = layers[0, N_IN], last = layers.shape[0] - 1
    cdef Py_ssize_t n_batches = (n + batch - 1) // batch
    cdef Py_ssize_t epoch, index, lo, rows, r0, r1, layer, k0, k1, offset
    cdef Layer top = _layer(layers, last), current
    cdef Py_ssize_t n_out = top.n_out
    cdef int u
    cdef bint shuffled = orders != NULL
    cdef const int64_t* order = NULL
    cdef const floating* x
    cdef const int64_t* lab
    cdef const floating* tgt
    cdef const floating* wgt
    cdef const floating* values = <const floating*>sparse.values
    cdef const int64_t* indices = sparse.indices
    cdef const int64_t* indptr = sparse.indptr
    cdef double value, loss_sum = 0, metric_sum = 0
    cdef bint clipped = hyper.clip_norm > 0
    cdef Step c
    for epoch in range(n_epochs):
        if t == 0:
            _save_backup(backup, n_params, p, sa, sb)
            loss_sum = metric_sum = 0
        fastnn_barrier_wait(&shared.barrier, phase, n_threads)
        if shuffled:
            order = orders + epoch * n
        for index in range(n_batches):
            lo = index * batch
            rows = min(batch, n - lo)
            r0, r1 = _split(rows, t, n_threads), _split(rows, t + 1, n_threads)
            if shuffled:
                _gather(order, lo + r0, r1 - r0, X, labels, targets, weights, a + r0 * n_in, lwork + r0,
                        twork + r0 * n_out, wwork + r0)
                x, lab, tgt, wgt = a, lwork, twork, wwork
            else:
                x = &X[lo, 0] if not is_sparse else a
                lab = &labels[lo] if labels.shape[0] > 0 else NULL
                tgt = &targets[lo, 0] if targets.shape[0] > 0 else NULL
                wgt = &weights[lo] if weights.shape[0] > 0 else NULL
            if csr:
                if shuffled and t == 0:
                    _gather_csr(order + lo, rows, sparse, <const floating*>sparse.values)
                values = <const floating*>(sparse.batch_values if shuffled else sparse.values)
                indices = sparse.batch_indices if shuffled else sparse.indices
                indptr = sparse.batch_indptr if shuffled else sparse.indptr + lo
            elif is_sparse:
                _densify(order + lo if shuffled else NULL, lo, r0, r1, sparse, <const floating*>sparse.values, a,
                         n_in)
            if shuffled or is_sparse:
                fastnn_barrier_wait(&shared.barrier, phase, n_threads)
            for layer in range(last + 1):
                current = _layer(layers, layer)
                if layer == 0 and csr:
                    _csr_forward_batch(p, current, <floating>alphas[layer], values, indices, indptr,
                                       a + current.outputs, rows, _split(current.n_out, t, n_threads),
                                       _split(current.n_out, t + 1, n_threads))
                else:
                    _forward_batch(p, current, <floating>alphas[layer], x if layer == 0 else a + current.inputs,
                                   a + current.outputs, rows, _split(current.n_out, t, n_threads),
                                   _split(current.n_out, t + 1, n_threads))
                fastnn_barrier_wait(&shared.barrier, phase, n_threads)
            sums[t] = 0
            if r1 > r0:
                sums[t] = batch_loss(loss, a + top.outputs + r0 * n_out, r1 - r0, n_out,
                                     lab + r0 if labels.shape[0] > 0 else NULL,
                                     tgt + r0 * n_out if targets.shape[0] > 0 else NULL,
                                     wgt + r0 if weights.shape[0] > 0 else NULL,
                                     weight_total(&weights[0] if weights.shape[0] > 0 else NULL, order, lo, rows),
                                     d + top.outputs + r0 * n_out)
                _activation_gradients(d + top.outputs + r0 * n_out, a + top.outputs + r0 * n_out,
                                      (r1 - r0) * n_out, top.code, <floating>alphas[last])
            fastnn_barrier_wait(&shared.barrier, phase, n_threads)
            value = 0
            for u in range(n_threads):
                value += sums[u]
            if not value <= LOSS_LIMIT:
                if t == 0:
                    shared.diverged, shared.epoch, shared.index, shared.value = True, epoch, index, value
                    shared.steps = step
                return
            if t == 0:
                if losses != NULL:
                    losses[epoch * n_batches + index] = value
                loss_sum += value * rows
                metric_sum += _metric(loss, a + top.outputs, rows, n_out, lab, tgt)
            step += 1
            c = _constants(hyper, optimizer, step)
            for layer in range(last, -1, -1):
                current = _layer(layers, layer)
                _rows(current, t, n_threads, &k0, &k1)
                if layer == 0 and csr:
                    _csr_backward_share(g, current, values, indices, indptr, d + current.outputs, rows, k0, k1)
                else:
                    _backward_share(p, g, current, x if layer == 0 else a + current.inputs, d + current.outputs,
                                    NULL if layer == 0 else d + current.inputs,
                                    _layer(layers, layer - 1).code if layer > 0 else IDENTITY,
                                    <floating>alphas[layer - 1] if layer > 0 else 0, rows, k0, k1)
                if not clipped:
                    offset = current.w + k0 * current.n_out
                    _step(p + offset, g + offset, sa + offset if sa != NULL else NULL,
                          sb + offset if sb != NULL else NULL, (k1 - k0) * current.n_out, optimizer, c)
                # The next layer back reads all of this delta; the next step's forward pass all of W.
                fastnn_barrier_wait(&shared.barrier, phase, n_threads)
            if clipped:
                _clipped_step(t, n_threads, shared, phase, sums, layers, p, g, sa, sb, optimizer, c, hyper.clip_norm)
        if t == 0:
            stats[2 * epoch] = loss_sum
            stats[2 * epoch + 1] = metric_sum
    if t == 0:
        shared.steps = step

