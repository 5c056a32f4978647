# The Cython training engine, compiled twice from this one source: cython_engine.pyx
# for any x86-64 (or other) CPU, cython_engine_avx2.pyx with AVX2 and FMA
# (fastnn/engine.py loads the second where the CPU has them). The math is scalar.pxd's,
# shared with the Cython kernels; the loops are in the files included below.
import numpy as np

from cython cimport floating
from libc.math cimport sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from cython.parallel cimport parallel, threadid

from abi cimport (ADAM, BCE, CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, LEAKY_RELU, MSE, RELU, SGD, SIGMOID,
                  STEP, TANH, ACTIVATION, IN_OFFSET, N_IN, N_OUT, OUT_OFFSET, W_OFFSET, Hyper)
from blas cimport gemm_ptr
from scalar cimport (Step, activate, activate_all, activation_gradient, activation_gradient_all, adam_constants,
                     adam_step, batch_loss, descend, metric_row, sgd_constants, sgd_step, weight_total)

cdef object FLOAT64 = np.dtype(np.float64), FLOAT32 = np.dtype(np.float32)
# A batch loss above this (or NaN) stops training as diverged (reference.py).
from fastnn.kernels.reference import LOSS_LIMIT as _LOSS_LIMIT
cdef double LOSS_LIMIT = _LOSS_LIMIT
# run_online and run_batches train on run.threads threads of their own, with BLAS on
# one thread (fastnn/engine.py reads this).
OWN_THREADS = True

include "engine_threads.pxi"
include "engine_common.pxi"
include "engine_online.pxi"
include "engine_batch.pxi"


def _run(bint online, int n_threads, floating[::1] params, floating[::1] grads, floating[::1] state_a,
         floating[::1] state_b, floating[:, ::1] backup, const int64_t[:, ::1] layers, const double[::1] alphas,
         const Hyper[::1] hyper, int optimizer, int loss, long step, const floating[:, ::1] X,
         const int64_t[::1] labels, const floating[:, ::1] targets, const floating[::1] weights,
         const int64_t[:, ::1] orders, Py_ssize_t n_epochs, Py_ssize_t batch, floating[::1] acts,
         floating[::1] deltas, floating[:, ::1] twork, floating[::1] wwork, int64_t[::1] lwork,
         double[:, ::1] stats):
    """Online or mini-batch training on n_threads threads (engine_online.pxi,
    engine_batch.pxi); returns (epochs completed, batch index, optimizer steps, loss)."""
    cdef Shared shared
    cdef Py_ssize_t n_acts = acts.shape[0]
    # Per-thread scratch: a double each (a part of the batch's loss, of the squared
    # gradient norm), and online each thread's partial sums of every layer's outputs.
    cdef double* sums = <double*>malloc(n_threads * (sizeof(double) + (n_acts * sizeof(floating) if online else 0)))
    cdef floating* partials = <floating*>(sums + n_threads)
    cdef floating* sa = &state_a[0] if state_a.shape[0] > 0 else NULL
    cdef floating* sb = &state_b[0] if state_b.shape[0] > 0 else NULL
    cdef int team
    cdef unsigned int fp
    if sums == NULL:
        raise MemoryError("no memory for the threads' scratch space")
    fastnn_barrier_init(&shared.barrier)
    shared.diverged = False
    try:
        with nogil, parallel(num_threads=n_threads):
            team = openmp.omp_get_num_threads()  # fewer than asked when OpenMP says so
            fp = fastnn_flush_denormals()
            if online:
                _online_thread(threadid(), team, &shared, sums, &params[0], &grads[0], sa, sb, backup, layers,
                               alphas, &hyper[0], optimizer, loss, step, X, labels, targets, weights, orders,
                               n_epochs, &acts[0], &deltas[0], partials, n_acts, stats)
            else:
                _batch_thread(threadid(), team, &shared, sums, &params[0], &grads[0], sa, sb, backup, layers,
                              alphas, &hyper[0], optimizer, loss, step, X, labels, targets, weights, orders,
                              n_epochs, batch, &acts[0], &deltas[0], &twork[0, 0], &wwork[0], &lwork[0], stats)
            fastnn_restore_fp(fp)
    finally:
        free(sums)
    if shared.diverged:
        return shared.epoch, shared.index, shared.steps, shared.value
    return n_epochs, 0, shared.steps, 0.0


def _train(online, model, data, work, run):
    """Unpack the bundles of abi.py for _run (which dispatches on the parameters' dtype)."""
    if model.params.dtype != FLOAT64 and model.params.dtype != FLOAT32:
        raise TypeError(f"params must be float32 or float64; got {model.params.dtype}")
    return _run(online, run.threads, model.params, model.grads, model.state_a, model.state_b, work.backup,
                model.layers, model.alphas, model.hyper, run.optimizer, run.loss, run.step, data.X, data.labels,
                data.targets, data.weights, data.orders, run.n_epochs, run.batch, work.acts, work.deltas,
                work.twork, work.wwork, work.lwork, work.stats)


def run_batches(model, data, work, run):
    """Mini-batch training for run.n_epochs: the bundles and result of abi.py."""
    return _train(False, model, data, work, run)


def run_online(model, data, work, run):
    """Online training (batch 1) for run.n_epochs: the bundles and result of abi.py."""
    return _train(True, model, data, work, run)


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
