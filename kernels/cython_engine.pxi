# The Cython training engine, compiled twice from this one source: cython_engine.pyx
# for any x86-64 (or other) CPU, cython_engine_avx2.pyx with AVX2 and FMA
# (fastnn/engine.py loads the second where the CPU has them). The math is scalar.pxd's,
# shared with the Cython kernels; the loops are in the files included below.
import numpy as np

from cython cimport floating
from libc.math cimport sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, threadid

from abi cimport (ADAM, BCE, CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, LEAKY_RELU, MSE, RELU, SGD, SIGMOID,
                  STEP, TANH, ACTIVATION, IN_OFFSET, N_IN, N_OUT, OUT_OFFSET, W_OFFSET, Hyper)
from blas cimport bind_cells, gemm_ptr
from csr cimport csr_row_gradient, csr_row_product
from scalar cimport (Step, activate, activate_all, activation_gradient, activation_gradient_all, adam_constants,
                     adam_step, batch_loss, descend, metric_row, sgd_constants, sgd_steps,
                     weight_total)

# Every matrix product goes to the provider installed in gemm.py's cells.
from fastnn.kernels.gemm import CELLS_ADDRESS
bind_cells(CELLS_ADDRESS)

cdef object FLOAT64 = np.dtype(np.float64), FLOAT32 = np.dtype(np.float32)
# A batch loss above this (or NaN) stops training as diverged (reference.py).
from fastnn.kernels.reference import LOSS_LIMIT as _LOSS_LIMIT
cdef double LOSS_LIMIT = _LOSS_LIMIT
# run_online and run_batches train on run.threads threads of their own, with BLAS on
# one thread (fastnn/engine.py reads this).
OWN_THREADS = True
# The largest batches whose first layer fastnn/engine.py multiplies entry by entry when X
# is sparse enough, on one thread: a model alone, and each of a stack's models on threads
# of their own (measured on the MNIST digits, docs/engine.md: alone, batch 8 1.33x, 16
# 1.15x, 32 1.03x, and 1.18x at 32 beside a second such process, as in a sweep; stacked,
# batch 8 1.92x, 32 1.46x, 64 1.18x, 128 1.09x; on the engine's two threads slower at every
# batch size).
CSR_MAX_BATCH = 32
CSR_MAX_BATCH_STACKED = 64

include "engine_threads.pxi"
include "engine_common.pxi"
include "engine_online.pxi"
include "engine_batch.pxi"
include "engine_lanes.pxi"


def _run(bint online, int n_threads, floating[:, ::1] params, floating[:, ::1] grads, floating[:, ::1] state_a,
         floating[:, ::1] state_b, int64_t[::1] steps, const int64_t[::1] active, floating[:, :, ::1] backup,
         const int64_t[:, ::1] layers, const double[::1] alphas, const Hyper[::1] hyper, int optimizer, int loss,
         const floating[:, ::1] X, const int64_t[::1] labels, const floating[:, ::1] targets,
         const floating[::1] weights, const floating[::1] values, const int64_t[::1] indices,
         const int64_t[::1] indptr, const int64_t[:, :, ::1] orders, Py_ssize_t n_epochs, Py_ssize_t batch,
         floating[::1] acts, floating[::1] deltas, floating[:, ::1] twork, floating[::1] wwork,
         int64_t[::1] lwork, floating[::1] svalues, int64_t[::1] sindices, int64_t[::1] sindptr,
         bint sparse_product, double[:, :, ::1] stats, double[:, :, ::1] update_losses, int64_t[::1] done,
         int64_t[::1] failed_batch, double[::1] failed_loss):
    """Online or mini-batch training of the stack on n_threads threads (engine_online.pxi,
    engine_batch.pxi): the team trains each active model k in turn, on its rows of the
    per-model arrays, then thread 0 writes its outcome to done[k], failed_batch[k],
    failed_loss[k] and steps[k] (abi.py)."""
    cdef Shared shared
    cdef Sparse sparse
    cdef Py_ssize_t n_models = params.shape[0], n_params = params.shape[1], k = 0
    cdef Py_ssize_t n = indptr.shape[0] - 1 if indptr.shape[0] > 0 else X.shape[0]
    cdef Py_ssize_t n_acts = acts.shape[0]
    # Per-thread scratch: a double each (a part of the batch's loss, of the squared
    # gradient norm), and online each thread's partial sums of every layer's outputs.
    cdef double* sums = <double*>malloc(n_threads * (sizeof(double) + (n_acts * sizeof(floating) if online else 0)))
    cdef floating* partials = <floating*>(sums + n_threads)
    cdef floating* sa = NULL
    cdef floating* sb = NULL
    # Model k's orders, epoch e's at order + e * n; NULL trains in order.
    cdef const int64_t* order = NULL
    # Model k's update losses, epoch e's at losses + e * (updates per epoch); NULL records none.
    cdef double* losses = NULL
    cdef int t = 0, team, phase = 0
    cdef unsigned int fp
    if sums == NULL:
        raise MemoryError("no memory for the threads' scratch space")
    fastnn_barrier_init(&shared.barrier)
    shared.diverged = False
    sparse.indptr = &indptr[0] if indptr.shape[0] > 0 else NULL
    sparse.values = &values[0] if values.shape[0] > 0 else NULL
    sparse.indices = &indices[0] if indices.shape[0] > 0 else NULL
    sparse.n = n
    sparse.batch_values = &svalues[0] if svalues.shape[0] > 0 else NULL
    sparse.batch_indices = &sindices[0] if sindices.shape[0] > 0 else NULL
    sparse.batch_indptr = &sindptr[0] if sindptr.shape[0] > 0 else NULL
    sparse.product = sparse_product
    if online and _lanes_train(n_models, n_threads, optimizer, hyper, active):
        free(sums)
        _lanes(params, state_a, steps, active, backup, layers, alphas, hyper, loss, X, labels, targets, weights,
               orders, n_epochs, n_acts, stats, update_losses, done, failed_batch, failed_loss)
        return
    try:
        with nogil, parallel(num_threads=n_threads):
            team = openmp.omp_get_num_threads()  # fewer than asked when OpenMP says so
            t = threadid()
            phase = 0  # the thread's own phase of shared.barrier, kept from model to model
            fp = fastnn_flush_denormals()
            for k in range(n_models):
                if active[k] == 0:
                    if t == 0:
                        done[k] = 0
                    continue
                sa = &state_a[k, 0] if state_a.shape[1] > 0 else NULL
                sb = &state_b[k, 0] if state_b.shape[1] > 0 else NULL
                order = NULL
                if orders.shape[0] > 0 and n_epochs > 0 and n > 0:
                    order = &orders[k if orders.shape[0] > 1 else 0, 0, 0]
                losses = &update_losses[k, 0, 0] if update_losses.shape[1] > 0 else NULL
                if online and team == 1:  # the same loop, compiled with its barriers gone
                    _online_thread(0, 1, &shared, &phase, sums, &params[k, 0], &grads[k, 0], sa, sb,
                                   &backup[k, 0, 0], n_params, layers, alphas, &hyper[k], optimizer, loss, steps[k],
                                   X, labels, targets, weights, order, n_epochs, &acts[0], &deltas[0], partials,
                                   n_acts, &stats[k, 0, 0], losses)
                elif online:
                    _online_thread(t, team, &shared, &phase, sums, &params[k, 0], &grads[k, 0], sa, sb,
                                   &backup[k, 0, 0], n_params, layers, alphas, &hyper[k], optimizer, loss, steps[k],
                                   X, labels, targets, weights, order, n_epochs, &acts[0], &deltas[0], partials,
                                   n_acts, &stats[k, 0, 0], losses)
                else:
                    _batch_thread(t, team, &shared, &phase, sums, &params[k, 0], &grads[k, 0], sa, sb,
                                  &backup[k, 0, 0], n_params, layers, alphas, &hyper[k], optimizer, loss, steps[k],
                                  X, labels, targets, weights, order, n_epochs, batch, &acts[0], &deltas[0],
                                  &twork[0, 0], &wwork[0], &lwork[0], &sparse, &stats[k, 0, 0], losses)
                # Every thread is past model k (and has read shared.diverged) before thread
                # 0 records it and clears shared for model k + 1.
                fastnn_barrier_wait(&shared.barrier, &phase, team)
                if t == 0:
                    steps[k] = shared.steps
                    if shared.diverged:
                        done[k], failed_batch[k], failed_loss[k] = shared.epoch, shared.index, shared.value
                    else:
                        done[k], failed_batch[k], failed_loss[k] = n_epochs, 0, 0.0
                    shared.diverged = False
            fastnn_restore_fp(fp)
    finally:
        free(sums)


def _lanes(floating[:, ::1] params, floating[:, ::1] state_a, int64_t[::1] steps, const int64_t[::1] active,
           floating[:, :, ::1] backup, const int64_t[:, ::1] layers, const double[::1] alphas,
           const Hyper[::1] hyper, int loss, const floating[:, ::1] X, const int64_t[::1] labels,
           const floating[:, ::1] targets, const floating[::1] weights, const int64_t[:, :, ::1] orders,
           Py_ssize_t n_epochs, Py_ssize_t n_acts, double[:, :, ::1] stats, double[:, :, ::1] update_losses,
           int64_t[::1] done, int64_t[::1] failed_batch, double[::1] failed_loss):
    """Online plain SGD of the stack's active models LANES at a time (engine_lanes.pxi);
    inactive models get done 0."""
    cdef Py_ssize_t k, n_params = params.shape[1]
    cdef int n_lanes = 0
    cdef int64_t models[LANES]
    cdef Py_ssize_t n_out = _layer(layers, layers.shape[0] - 1).n_out
    cdef floating* w = <floating*>malloc((n_params + 2 * n_acts) * LANES * sizeof(floating)
                                         + 2 * n_out * sizeof(floating))
    cdef unsigned int fp
    if w == NULL:
        raise MemoryError("no memory for the lanes' parameters")
    try:
        with nogil:
            fp = fastnn_flush_denormals()
            for k in range(params.shape[0]):
                if active[k] == 0:
                    done[k] = 0
                    continue
                models[n_lanes] = k
                n_lanes += 1
                if n_lanes == LANES or k == params.shape[0] - 1:
                    _online_lanes(params, state_a, steps, models, n_lanes, backup, layers, alphas, hyper, loss, X,
                                  labels, targets, weights, orders, n_epochs, n_acts, w, w + n_params * LANES,
                                  w + (n_params + n_acts) * LANES, w + (n_params + 2 * n_acts) * LANES, stats,
                                  update_losses, done, failed_batch, failed_loss)
                    n_lanes = 0
            fastnn_restore_fp(fp)
    finally:
        free(w)


def _train(online, model, data, work, run):
    """Unpack the bundles of abi.py for _run (which dispatches on the parameters' dtype)."""
    if model.params.dtype != FLOAT64 and model.params.dtype != FLOAT32:
        raise TypeError(f"params must be float32 or float64; got {model.params.dtype}")
    if online and data.indptr.shape[0] > 0:
        raise ValueError("the online loops (batch 1) take a dense X")
    _run(online, run.threads, model.params, model.grads, model.state_a, model.state_b, model.steps, model.active,
         work.backup, model.layers, model.alphas, model.hyper, run.optimizer, run.loss, data.X, data.labels,
         data.targets, data.weights, data.values, data.indices, data.indptr, data.orders, run.n_epochs, run.batch,
         work.acts, work.deltas, work.twork, work.wwork, work.lwork, work.svalues, work.sindices, work.sindptr,
         run.sparse_product, work.stats, work.update_losses, work.done, work.failed_batch, work.failed_loss)


def run_batches(model, data, work, run):
    """Mini-batch training of the stack for run.n_epochs: the bundles of abi.py."""
    _train(False, model, data, work, run)


def run_online(model, data, work, run):
    """Online training of the stack (batch 1) for run.n_epochs: the bundles of abi.py."""
    _train(True, model, data, work, run)


def abi_layout():
    """The codes and the hyper-parameter record as this build declares them (abi.pxd), for
    tests/kernels/test_abi.py to hold to abi.py: {"codes": {name: value}, "hyper":
    {field: (offset, size)}, "hyper_size": sizeof(Hyper)}."""
    cdef Hyper h
    cdef char* base = <char*>&h
    codes = dict(IDENTITY=IDENTITY, RELU=RELU, LEAKY_RELU=LEAKY_RELU, SIGMOID=SIGMOID, TANH=TANH, STEP=STEP,
                 CROSS_ENTROPY=CROSS_ENTROPY, CROSS_ENTROPY_SOFT=CROSS_ENTROPY_SOFT, MSE=MSE, BCE=BCE, SGD=SGD,
                 ADAM=ADAM, W_OFFSET=W_OFFSET, N_IN=N_IN, N_OUT=N_OUT, ACTIVATION=ACTIVATION, IN_OFFSET=IN_OFFSET,
                 OUT_OFFSET=OUT_OFFSET)
    hyper = {
        "lr": (<char*>&h.lr - base, sizeof(h.lr)),
        "momentum": (<char*>&h.momentum - base, sizeof(h.momentum)),
        "weight_decay": (<char*>&h.weight_decay - base, sizeof(h.weight_decay)),
        "beta1": (<char*>&h.beta1 - base, sizeof(h.beta1)),
        "beta2": (<char*>&h.beta2 - base, sizeof(h.beta2)),
        "eps": (<char*>&h.eps - base, sizeof(h.eps)),
        "clip_norm": (<char*>&h.clip_norm - base, sizeof(h.clip_norm)),
        "nesterov": (<char*>&h.nesterov - base, sizeof(h.nesterov)),
        "decoupled": (<char*>&h.decoupled - base, sizeof(h.decoupled)),
    }
    return {"codes": codes, "hyper": hyper, "hyper_size": sizeof(Hyper)}
