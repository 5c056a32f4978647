# Online plain SGD of several models at once in the Cython engine: the models across SIMD lanes.
#
# A tiny net's online step is a chain of short dependent loops (2-5-5-5-2: rows of five
# weights, an exponential per unit): one model leaves the vector units idle, waiting on
# latencies. Here up to LANES models of a stack step together: parameter p of lane l is at
# w[p * LANES + l], each layer's outputs and deltas likewise, so every loop over a layer's
# units runs over the lanes innermost and the compiler turns it into vector instructions
# that advance LANES models at once. Each lane computes what _online_thread computes for
# its model on one thread, by the same point functions in the same order (only the input
# gradient's dot product is summed in order here, in whatever order vectorises there), and
# stops on its own when its loss diverges. Plain SGD only (no momentum, weight decay or
# clipping): its step needs nothing but the lane's learning rate.

cdef enum:
    LANES = 8


cdef bint _lanes_train(Py_ssize_t n_models, int n_threads, int optimizer, const Hyper[::1] hyper,
                       const int64_t[::1] active) noexcept nogil:
    """Whether _online_lanes trains these models: two or more active ones, on one thread,
    with plain SGD."""
    cdef Py_ssize_t k, count = 0
    if n_threads != 1 or optimizer != SGD:
        return False
    for k in range(n_models):
        if active[k] != 0:
            count += 1
            if hyper[k].momentum != 0 or hyper[k].weight_decay != 0 or hyper[k].clip_norm > 0:
                return False
    return count >= 2


cdef inline void _to_lane(floating* w, const floating* row, Py_ssize_t n, int lane) noexcept nogil:
    cdef Py_ssize_t p
    for p in range(n):
        w[p * LANES + lane] = row[p]


cdef inline void _from_lane(const floating* w, floating* row, Py_ssize_t n, int lane) noexcept nogil:
    cdef Py_ssize_t p
    for p in range(n):
        row[p] = w[p * LANES + lane]


cdef void _online_lanes(floating[:, ::1] params, floating[:, ::1] state_a, int64_t[::1] steps,
                        const int64_t* models, int n_lanes, floating[:, :, ::1] backup,
                        const int64_t[:, ::1] layers, const double[::1] alphas, const Hyper[::1] hyper, int loss,
                        const floating[:, ::1] X, const int64_t[::1] labels, const floating[:, ::1] targets,
                        const floating[::1] weights, const int64_t[:, :, ::1] orders, Py_ssize_t n_epochs,
                        Py_ssize_t n_acts, floating* w, floating* a, floating* d, floating* row,
                        double[:, :, ::1] stats, double[:, :, ::1] update_losses, int64_t[::1] done,
                        int64_t[::1] failed_batch, double[::1] failed_loss) noexcept nogil:
    """Online plain SGD for n_epochs of the n_lanes (<= LANES) models ``models`` of the stack,
    one per lane; w holds n_params * LANES, a and d n_acts * LANES, row twice the outputs.
    Writes each model's parameters, backup, statistics, update losses, steps and outcome as
    the one-model loop does."""
    cdef Py_ssize_t n_params = params.shape[1], n = X.shape[0], n_in = X.shape[1], last = layers.shape[0] - 1
    cdef Py_ssize_t epoch, sample, i, j, o, layer, m, w0, b0
    cdef Layer top = _layer(layers, last), current
    cdef Py_ssize_t n_out = top.n_out
    cdef int l, alive = n_lanes, prev_code
    cdef int live[LANES]
    cdef Py_ssize_t index[LANES]
    cdef const int64_t* order[LANES]
    cdef floating lr[LANES]
    cdef floating total[LANES]
    cdef int64_t step[LANES]
    cdef double loss_sum[LANES]
    cdef double metric_sum[LANES]
    cdef double value
    cdef bint recording = update_losses.shape[1] > 0
    cdef floating prev_alpha
    cdef floating* gradient = row + n_out
    cdef const int64_t* lab
    cdef const floating* tgt
    for l in range(LANES):
        m = models[l if l < n_lanes else 0]
        live[l] = l < n_lanes
        lr[l] = <floating>hyper[m].lr if live[l] else 0
        step[l] = steps[m]
        order[l] = NULL
        if orders.shape[0] > 0:
            order[l] = &orders[m if orders.shape[0] > 1 else 0, 0, 0]
        _to_lane(w, &params[m, 0], n_params, l)
    for epoch in range(n_epochs):
        for l in range(n_lanes):
            if live[l]:
                m = models[l]
                _from_lane(w, &params[m, 0], n_params, l)
                _save_backup(&backup[m, 0, 0], n_params, &params[m, 0],
                             &state_a[m, 0] if state_a.shape[1] > 0 else NULL, NULL)
            loss_sum[l] = metric_sum[l] = 0
        for sample in range(n):
            for l in range(LANES):
                index[l] = order[l][epoch * n + sample] if order[l] != NULL else sample
            for j in range(n_in):
                for l in range(LANES):
                    a[j * LANES + l] = X[index[l], j]
            for layer in range(last + 1):
                current = _layer(layers, layer)
                w0, b0 = current.w * LANES, (current.w + current.n_in * current.n_out) * LANES
                for o in range(current.n_out * LANES):
                    a[current.outputs * LANES + o] = 0
                for j in range(current.n_in):
                    for o in range(current.n_out):
                        for l in range(LANES):
                            a[(current.outputs + o) * LANES + l] += (a[(current.inputs + j) * LANES + l]
                                                                     * w[w0 + (j * current.n_out + o) * LANES + l])
                for o in range(current.n_out * LANES):
                    a[current.outputs * LANES + o] += w[b0 + o]
                activate_all(a + current.outputs * LANES, a + current.outputs * LANES, current.n_out * LANES,
                             current.code, <floating>alphas[layer])
            for l in range(LANES):
                if live[l]:
                    i = index[l]
                    _from_lane(a + top.outputs * LANES, row, n_out, l)
                    lab = &labels[i] if labels.shape[0] > 0 else NULL
                    tgt = &targets[i, 0] if targets.shape[0] > 0 else NULL
                    value = batch_loss(loss, row, 1, n_out, lab, tgt, &weights[i] if weights.shape[0] > 0 else NULL,
                                       weight_total(&weights[0] if weights.shape[0] > 0 else NULL, NULL, i, 1),
                                       gradient)
                    if value <= LOSS_LIMIT:
                        if recording:
                            update_losses[models[l], epoch, sample] = value
                        loss_sum[l] += value
                        metric_sum[l] += _metric(loss, row, 1, n_out, lab, tgt)
                    else:  # this model stops before the update, as alone
                        m = models[l]
                        _from_lane(w, &params[m, 0], n_params, l)
                        done[m], failed_batch[m], failed_loss[m], steps[m] = epoch, sample, value, step[l]
                        live[l], lr[l] = False, 0
                        alive -= 1
                if not live[l]:
                    for o in range(n_out):
                        gradient[o] = 0
                _to_lane(d + top.outputs * LANES, gradient, n_out, l)
            if alive == 0:
                return
            if top.code != IDENTITY:
                activation_gradient_all(a + top.outputs * LANES, d + top.outputs * LANES, d + top.outputs * LANES,
                                        n_out * LANES, top.code, <floating>alphas[last])
            for layer in range(last, -1, -1):
                current = _layer(layers, layer)
                w0, b0 = current.w * LANES, (current.w + current.n_in * current.n_out) * LANES
                prev_code = _layer(layers, layer - 1).code if layer > 0 else IDENTITY
                prev_alpha = <floating>alphas[layer - 1] if layer > 0 else 0
                for j in range(current.n_in):
                    if layer > 0:  # the input gradient from row j before it changes
                        for l in range(LANES):
                            total[l] = 0
                        for o in range(current.n_out):
                            for l in range(LANES):
                                total[l] += (w[w0 + (j * current.n_out + o) * LANES + l]
                                             * d[(current.outputs + o) * LANES + l])
                        activation_gradient_all(a + (current.inputs + j) * LANES, total,
                                                d + (current.inputs + j) * LANES, LANES, prev_code, prev_alpha)
                    for o in range(current.n_out):
                        for l in range(LANES):
                            w[w0 + (j * current.n_out + o) * LANES + l] -= lr[l] * (
                                a[(current.inputs + j) * LANES + l] * d[(current.outputs + o) * LANES + l])
                for o in range(current.n_out):
                    for l in range(LANES):
                        w[b0 + o * LANES + l] -= lr[l] * d[(current.outputs + o) * LANES + l]
            for l in range(LANES):
                step[l] += 1
        for l in range(n_lanes):
            if live[l]:
                stats[models[l], epoch, 0] = loss_sum[l]
                stats[models[l], epoch, 1] = metric_sum[l]
    for l in range(n_lanes):
        if live[l]:
            m = models[l]
            _from_lane(w, &params[m, 0], n_params, l)
            done[m], failed_batch[m], failed_loss[m], steps[m] = n_epochs, 0, 0.0, step[l]
