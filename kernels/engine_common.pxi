# What both training loops of the Cython engine use (engine_online.pxi, engine_batch.pxi):
# the layer table, each thread's rows of a layer, the batch's metric, the optimizer step
# over a block of parameters and clipping, the epoch-start backup and gathering samples.

cdef struct Layer:
    Py_ssize_t w, n_in, n_out, inputs, outputs
    int code


cdef inline Layer _layer(const int64_t[:, ::1] layers, Py_ssize_t i) noexcept nogil:
    cdef Layer layer
    layer.w = layers[i, W_OFFSET]
    layer.n_in = layers[i, N_IN]
    layer.n_out = layers[i, N_OUT]
    layer.code = <int>layers[i, ACTIVATION]
    layer.inputs = layers[i, IN_OFFSET]
    layer.outputs = layers[i, OUT_OFFSET]
    return layer


cdef inline void _rows(Layer layer, int t, int n_threads, Py_ssize_t* k0, Py_ssize_t* k1) noexcept nogil:
    """Thread t's rows k0:k1 of the layer's [W; b]: the input units split evenly, row
    n_in (the bias) with the last thread's share. Only thread t reads or writes them
    (their parameters, gradient and optimizer state) while the others run."""
    k0[0] = _split(layer.n_in, t, n_threads)
    k1[0] = _split(layer.n_in, t + 1, n_threads) + (t == n_threads - 1)


cdef double _metric(int loss, const floating* out, Py_ssize_t rows, Py_ssize_t cols,
                    const int64_t* labels, const floating* targets) noexcept nogil:
    """The batch's metric times its rows, as numba_engine._metric: the sum of metric_row,
    or for MSE the R² of each output column averaged over the columns."""
    cdef Py_ssize_t i, j
    cdef double total = 0, mean, residual, spread
    if loss != MSE:
        for i in range(rows):
            total += metric_row(loss, out + i * cols, cols, labels[i] if labels != NULL else 0,
                                targets + i * cols if targets != NULL else NULL)
        return total
    for j in range(cols):
        mean = residual = spread = 0
        for i in range(rows):
            mean += targets[i * cols + j]
        mean /= rows
        for i in range(rows):
            residual += (<double>targets[i * cols + j] - out[i * cols + j]) ** 2
            spread += (targets[i * cols + j] - mean) ** 2
        if spread > 0:
            total += 1.0 - residual / spread
        elif residual == 0:
            total += 1.0
    return total * (<double>rows / cols)


cdef inline Step _constants(const Hyper* hyper, int optimizer, long step) noexcept nogil:
    """The constants of optimizer step number ``step``."""
    return sgd_constants(hyper) if optimizer == SGD else adam_constants(hyper, step)


cdef void _step(floating* params, const floating* grads, floating* state_a, floating* state_b, Py_ssize_t n,
                int optimizer, Step c) noexcept nogil:
    """One SGD or Adam step of params[:n] with gradient grads[:n] (state_a is SGD's velocity
    or Adam's m; state_b Adam's v)."""
    cdef Py_ssize_t k
    if optimizer == SGD:
        sgd_steps(params, grads, 1, state_a, n, c)
    else:
        for k in range(n):
            adam_step(&params[k], grads[k], &state_a[k], &state_b[k], c)


cdef void _rows_step(int t, int n_threads, const int64_t[:, ::1] layers, floating* p, const floating* g,
                     floating* sa, floating* sb, int optimizer, Step c) noexcept nogil:
    """The optimizer step of thread t's rows of every layer with their gradient in g. One
    thread's rows are all the parameters, stepped as one block (the layers lie end to end)."""
    cdef Py_ssize_t layer, k0, k1, offset, end
    cdef Layer current = _layer(layers, layers.shape[0] - 1)
    if n_threads == 1:
        offset, end = _layer(layers, 0).w, current.w + (current.n_in + 1) * current.n_out
        _step(p + offset, g + offset, sa + offset if sa != NULL else NULL, sb + offset if sb != NULL else NULL,
              end - offset, optimizer, c)
        return
    for layer in range(layers.shape[0]):
        current = _layer(layers, layer)
        _rows(current, t, n_threads, &k0, &k1)
        offset, end = current.w + k0 * current.n_out, current.w + k1 * current.n_out
        _step(p + offset, g + offset, sa + offset if sa != NULL else NULL, sb + offset if sb != NULL else NULL,
              end - offset, optimizer, c)


cdef void _clipped_step(int t, int n_threads, Shared* shared, int* phase, double* sums,
                        const int64_t[:, ::1] layers, floating* p, floating* g, floating* sa, floating* sb,
                        int optimizer, Step c, double clip_norm) noexcept nogil:
    """Thread t's part of the optimizer step once the whole gradient g is there: its rows of
    every layer scaled so that the gradient's global norm is at most clip_norm, then
    stepped. The threads add up their sums of squares in sums (a slot each) and meet
    again before the next forward pass reads the parameters."""
    cdef Py_ssize_t layer, k, k0, k1
    cdef double norm = 0
    cdef floating scale
    cdef Layer current
    cdef int u
    for layer in range(layers.shape[0]):
        current = _layer(layers, layer)
        _rows(current, t, n_threads, &k0, &k1)
        for k in range(current.w + k0 * current.n_out, current.w + k1 * current.n_out):
            norm += <double>g[k] * g[k]
    sums[t] = norm
    fastnn_barrier_wait(&shared.barrier, phase, n_threads)
    norm = 0
    for u in range(n_threads):
        norm += sums[u]
    norm = sqrt(norm)
    scale = <floating>(clip_norm / norm) if norm > clip_norm else 1
    if scale != 1:
        for layer in range(layers.shape[0]):
            current = _layer(layers, layer)
            _rows(current, t, n_threads, &k0, &k1)
            for k in range(current.w + k0 * current.n_out, current.w + k1 * current.n_out):
                g[k] *= scale
    _rows_step(t, n_threads, layers, p, g, sa, sb, optimizer, c)
    fastnn_barrier_wait(&shared.barrier, phase, n_threads)


cdef void _save_backup(floating* backup, Py_ssize_t n, const floating* p, const floating* sa,
                       const floating* sb) noexcept nogil:
    """The epoch-start copy of the n parameters and the optimizer state in a model's (3, n)
    backup (rows 0, 1, 2)."""
    memcpy(backup, p, n * sizeof(floating))
    if sa != NULL:
        memcpy(backup + n, sa, n * sizeof(floating))
    if sb != NULL:
        memcpy(backup + 2 * n, sb, n * sizeof(floating))


cdef void _gather(const int64_t* order, Py_ssize_t lo, Py_ssize_t rows, const floating[:, ::1] X,
                  const int64_t[::1] labels, const floating[:, ::1] targets, const floating[::1] weights,
                  floating* xwork, int64_t* lwork, floating* twork, floating* wwork) noexcept nogil:
    """Copy samples order[lo:lo + rows] into the workspaces."""
    cdef Py_ssize_t r, i, n_in = X.shape[1], n_out = targets.shape[1]
    for r in range(rows):
        i = order[lo + r]
        if X.shape[0] > 0:  # else X is sparse: _gather_csr, _densify
            memcpy(xwork + r * n_in, &X[i, 0], n_in * sizeof(floating))
        if labels.shape[0] > 0:
            lwork[r] = labels[i]
        if targets.shape[0] > 0:
            memcpy(twork + r * n_out, &targets[i, 0], n_out * sizeof(floating))
        if weights.shape[0] > 0:
            wwork[r] = weights[i]


cdef struct Sparse:
    # A sparse X (abi.py): its CSR arrays (indptr NULL for a dense X) of n rows; the
    # batch's rows gathered in epoch order; whether the first layer multiplies them entry
    # by entry (product) or they are densified into the workspace. values point at the
    # parameters' dtype.
    const void* values
    const int64_t* indices
    const int64_t* indptr
    Py_ssize_t n
    void* batch_values
    int64_t* batch_indices
    int64_t* batch_indptr
    bint product


cdef void _gather_csr(const int64_t* order, Py_ssize_t rows, const Sparse* sparse,
                      const floating* values) noexcept nogil:
    """The sparse rows order[:rows] into sparse's batch arrays (CSR from position 0);
    values are sparse.values, in the parameters' dtype."""
    cdef Py_ssize_t r, i, start, count, filled = 0
    cdef floating* batch_values = <floating*>sparse.batch_values
    sparse.batch_indptr[0] = 0
    for r in range(rows):
        i = order[r]
        start, count = sparse.indptr[i], sparse.indptr[i + 1] - sparse.indptr[i]
        memcpy(batch_values + filled, values + start, count * sizeof(floating))
        memcpy(sparse.batch_indices + filled, sparse.indices + start, count * sizeof(int64_t))
        filled += count
        sparse.batch_indptr[r + 1] = filled


cdef void _densify(const int64_t* order, Py_ssize_t lo, Py_ssize_t r0, Py_ssize_t r1, const Sparse* sparse,
                   const floating* values, floating* x, Py_ssize_t n_in) noexcept nogil:
    """Rows r0:r1 of the batch of samples order[:rows] (lo + r for order NULL) written
    densely into x (rows of n_in)."""
    cdef Py_ssize_t r, i, p
    for r in range(r0, r1):
        i = order[r] if order != NULL else lo + r
        memset(x + r * n_in, 0, n_in * sizeof(floating))
        for p in range(sparse.indptr[i], sparse.indptr[i + 1]):
            x[r * n_in + sparse.indices[p]] += values[p]
