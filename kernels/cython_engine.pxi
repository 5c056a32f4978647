# The Cython training engine, compiled twice from this one source: cython_engine.pyx
# for any x86-64 (or other) CPU, cython_engine_avx2.pyx with AVX2 and FMA
# (fastnn/engine.py loads the second where the CPU has them).
import numpy as np

from cython cimport floating
from libc.math cimport exp, fabs, log, log1p, sqrt
from libc.stdint cimport int64_t
from libc.string cimport memcpy

from cython.parallel cimport parallel, threadid
from libc.stdlib cimport free, malloc
cimport openmp

from blas cimport gemm_ptr
from elementwise cimport _sigmoid, _sqrt, _tanh

from abi cimport (ADAM, BCE, CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, LEAKY_RELU, MSE, RELU, SGD, SIGMOID,
                 TANH, ACTIVATION, IN_OFFSET, N_IN, N_OUT, OUT_OFFSET, W_OFFSET, Hyper)

cdef object FLOAT64 = np.dtype(np.float64), FLOAT32 = np.dtype(np.float32)
# A batch loss above this (or NaN) stops training as diverged (reference.py).
from fastnn.kernels.reference import LOSS_LIMIT as _LOSS_LIMIT
cdef double LOSS_LIMIT = _LOSS_LIMIT
# run_online and run_batches train on run.threads threads of their own, with BLAS on
# one thread (fastnn/engine.py reads this).
OWN_THREADS = True


cdef inline floating _activate(floating z, int code, floating alpha) noexcept nogil:
    """f(z), as cython_kernels._activate."""
    if code == RELU:
        return 0 if z < 0 else z
    if code == LEAKY_RELU:
        return z if z > 0 else z * alpha
    if code == SIGMOID:
        return _sigmoid(z)
    if code == TANH:
        return _tanh(z)
    return z


cdef inline floating _activation_gradient(floating a, floating d, int code, floating alpha) noexcept nogil:
    """d * f'(z) from a = f(z), as cython_kernels._activation_gradient."""
    if code == RELU:
        return d if a > 0 else 0
    if code == LEAKY_RELU:
        return d * (1 if a > 0 else alpha)
    if code == SIGMOID:
        return d * a * (1 - a)
    if code == TANH:
        return d * (1 - a * a)
    return d


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


cdef double _weight_total(const int64_t* order, Py_ssize_t lo, Py_ssize_t rows,
                          const floating[::1] weights) noexcept nogil:
    """The loss's divisor for samples order[lo:lo + rows] (lo:lo + rows when order is NULL):
    their number, or the sum of their weights when weighted (a sum of 0 counts as 1)."""
    cdef Py_ssize_t r
    cdef double total = 0
    if weights.shape[0] == 0:
        return rows
    for r in range(rows):
        total += weights[order[lo + r] if order != NULL else lo + r]
    return total if total > 0 else 1.0


cdef double _loss(int loss, const floating* out, Py_ssize_t rows, Py_ssize_t cols,
                  const int64_t* labels, const floating* targets, const floating* weights,
                  double total, floating* grad) noexcept nogil:
    """Weighted loss of out (rows, cols) and its gradient into grad, as the kernels: row
    weights 1 / total, or weights[i] / total, total from _weight_total (of these rows, or
    of the whole batch when a thread computes the loss of its share)."""
    cdef Py_ssize_t i, j
    cdef double w, top, lse, t, z, e, row_loss, target_sum, log_p, result = 0
    cdef int64_t label
    for i in range(rows):
        w = (weights[i] if weights != NULL else 1.0) / total
        if loss == CROSS_ENTROPY or loss == CROSS_ENTROPY_SOFT:
            top = out[i * cols]
            for j in range(1, cols):
                if out[i * cols + j] > top:
                    top = out[i * cols + j]
            lse = 0
            for j in range(cols):
                e = exp(out[i * cols + j] - top)
                lse += e
                if loss == CROSS_ENTROPY:
                    grad[i * cols + j] = e  # kept for the gradient below: one exp per entry
            if loss == CROSS_ENTROPY:
                label = labels[i]
                result -= w * ((out[i * cols + label] - top) - log(lse))
                for j in range(cols):
                    e = grad[i * cols + j] / lse
                    grad[i * cols + j] = (e - 1.0 if j == label else e) * w
            else:
                lse = log(lse)
                target_sum = row_loss = 0
                for j in range(cols):
                    target_sum += targets[i * cols + j]
                for j in range(cols):
                    t = targets[i * cols + j]
                    log_p = (out[i * cols + j] - top) - lse
                    row_loss += t * log_p
                    grad[i * cols + j] = (exp(log_p) * target_sum - t) * w
                result -= w * row_loss
        elif loss == MSE:
            row_loss = 0
            for j in range(cols):
                z = <double>out[i * cols + j] - targets[i * cols + j]
                row_loss += z * z
                grad[i * cols + j] = z * (2.0 * w / cols)
            result += w * row_loss
        else:
            row_loss = 0
            for j in range(cols):
                z = out[i * cols + j]
                t = targets[i * cols + j]
                e = exp(-fabs(z))
                row_loss += (z if z > 0 else 0.0) - z * t + log1p(e)
                grad[i * cols + j] = ((1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)) - t) * (w / cols)
            result += w * row_loss
    if loss == MSE or loss == BCE:
        result /= cols
    return result


cdef inline Py_ssize_t _argmax(const floating* row, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j, best = 0
    for j in range(1, n):
        if row[j] > row[best]:
            best = j
    return best


cdef double _metric(int loss, const floating* out, Py_ssize_t rows, Py_ssize_t cols,
                    const int64_t* labels, const floating* targets) noexcept nogil:
    """The batch's metric times its rows, as numba_engine._metric."""
    cdef Py_ssize_t i, j
    cdef double total = 0, mean, residual, spread
    if loss == CROSS_ENTROPY:
        for i in range(rows):
            total += _argmax(out + i * cols, cols) == labels[i]
    elif loss == CROSS_ENTROPY_SOFT:
        for i in range(rows):
            total += _argmax(out + i * cols, cols) == _argmax(targets + i * cols, cols)
    elif loss == BCE:
        for i in range(rows):
            for j in range(cols):
                total += (out[i * cols + j] > 0) == (targets[i * cols + j] > 0.5)
        total /= cols
    else:
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
        total *= <double>rows / cols
    return total


cdef inline void _sgd_constants(const Hyper* hyper, floating* c) noexcept nogil:
    """c = lr, momentum, weight decay, nesterov (0 or 1) in the dtype, for _sgd_element."""
    c[0], c[1], c[2] = <floating>hyper.lr, <floating>hyper.momentum, <floating>hyper.weight_decay
    c[3] = 1 if hyper.nesterov != 0 else 0


cdef inline void _sgd_element(floating* p, floating g, floating* velocity, const floating* c) noexcept nogil:
    """One SGD step of one parameter p with gradient g (momentum, Nesterov, weight decay)."""
    cdef floating v
    g = g + c[2] * p[0]
    if c[1] != 0:
        v = c[1] * velocity[0] + g
        velocity[0] = v
        g = g + c[1] * v if c[3] != 0 else v
    p[0] -= c[0] * g


cdef inline void _adam_constants(const Hyper* hyper, long step, floating* c) noexcept nogil:
    """The constants of Adam step ``step`` in the dtype, for _adam_element: decoupled
    shrink, L2 weight decay, beta1, beta2, 1 - beta1, 1 - beta2, and with
    s = sqrt(1 - beta2^step): lr * s / (1 - beta1^step), eps * s."""
    cdef double s = sqrt(1.0 - hyper.beta2 ** step)
    c[0] = <floating>(1.0 - hyper.lr * hyper.weight_decay if hyper.decoupled != 0 else 1.0)
    c[1] = <floating>(0.0 if hyper.decoupled != 0 else hyper.weight_decay)
    c[2], c[3] = <floating>hyper.beta1, <floating>hyper.beta2
    c[4], c[5] = <floating>(1.0 - hyper.beta1), <floating>(1.0 - hyper.beta2)
    c[6] = <floating>(hyper.lr * s / (1.0 - hyper.beta1 ** step))
    c[7] = <floating>(hyper.eps * s)


cdef inline void _adam_element(floating* p, floating g, floating* m, floating* v, const floating* c) noexcept nogil:
    """One Adam/AdamW step of one parameter p with gradient g, in the dtype (as numba_engine._adam):
    lr / (1 - beta1^t) * m / (sqrt(v) / s + eps) written with one division, as
    lr * s / (1 - beta1^t) * m / (sqrt(v) + eps * s), s = sqrt(1 - beta2^t)."""
    cdef floating pf = p[0] * c[0]
    cdef floating mf, vf
    g = g + c[1] * pf
    mf = c[2] * m[0] + c[4] * g
    vf = c[3] * v[0] + c[5] * g * g
    m[0] = mf
    v[0] = vf
    p[0] = pf - c[6] * mf / (_sqrt(vf) + c[7])


cdef inline void _step_constants(const Hyper* hyper, int optimizer, long step, floating* c) noexcept nogil:
    """The constants of optimizer step ``step``, for _step."""
    if optimizer == SGD:
        _sgd_constants(hyper, c)
    else:
        _adam_constants(hyper, step, c)


cdef void _step(floating* params, const floating* grads, floating* state_a, floating* state_b, Py_ssize_t n,
                int optimizer, const floating* constants) noexcept nogil:
    """One SGD or Adam step of params[:n] with gradient grads[:n] (state_a is SGD's velocity,
    allocated with or without momentum, or Adam's m; state_b Adam's v)."""
    cdef Py_ssize_t k
    cdef floating c[9]  # a local copy: the compiler cannot tell that constants does not alias params
    memcpy(c, constants, 9 * sizeof(floating))
    if optimizer == SGD:
        for k in range(n):
            _sgd_element(&params[k], grads[k], &state_a[k], c)
    else:
        for k in range(n):
            _adam_element(&params[k], grads[k], &state_a[k], &state_b[k], c)


cdef void _update(floating* params, floating* grads, floating* state_a, floating* state_b,
                  Py_ssize_t n, const Hyper* hyper, int optimizer, long step) noexcept nogil:
    """Clip by global norm (if set), then one SGD or Adam step, in the dtype."""
    cdef Py_ssize_t k
    cdef double norm = 0
    cdef floating scale
    cdef floating c[9]
    if hyper.clip_norm > 0:
        for k in range(n):
            norm += <double>grads[k] * grads[k]
        norm = sqrt(norm)
        if norm > hyper.clip_norm:
            scale = <floating>(hyper.clip_norm / norm)
            for k in range(n):
                grads[k] *= scale
    _step_constants(hyper, optimizer, step, c)
    _step(params, grads, state_a, state_b, n, optimizer, c)


cdef void _save_backup(floating[:, ::1] backup, const floating* p, const floating* sa,
                       const floating* sb) noexcept nogil:
    """The epoch-start copy of the parameters and the optimizer state (rows 0, 1, 2)."""
    cdef Py_ssize_t n = backup.shape[1]
    memcpy(&backup[0, 0], p, n * sizeof(floating))
    if sa != NULL:
        memcpy(&backup[1, 0], sa, n * sizeof(floating))
    if sb != NULL:
        memcpy(&backup[2, 0], sb, n * sizeof(floating))


cdef void _gather(const int64_t* order, Py_ssize_t lo, Py_ssize_t rows, const floating[:, ::1] X,
                  const int64_t[::1] labels, const floating[:, ::1] targets, const floating[::1] weights,
                  floating* xwork, int64_t* lwork, floating* twork, floating* wwork) noexcept nogil:
    """Copy samples order[lo:lo + rows] (samples lo:lo + rows when order is NULL) into
    the workspaces."""
    cdef Py_ssize_t r, i, n_in = X.shape[1], n_out = targets.shape[1]
    for r in range(rows):
        i = order[lo + r] if order != NULL else lo + r
        memcpy(xwork + r * n_in, &X[i, 0], n_in * sizeof(floating))
        if labels.shape[0] > 0:
            lwork[r] = labels[i]
        if targets.shape[0] > 0:
            memcpy(twork + r * n_out, &targets[i, 0], n_out * sizeof(floating))
        if weights.shape[0] > 0:
            wwork[r] = weights[i]


cdef void _forward_batch(floating* params, Layer layer, floating alpha, const floating* a,
                         floating* z, Py_ssize_t rows, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """Columns j0:j1 of z = f(a @ W + b) for rows rows: one GEMM, then bias and activation."""
    cdef Py_ssize_t i, j, n_out = layer.n_out
    cdef const floating* b = params + layer.w + layer.n_in * n_out
    if j1 <= j0:
        return
    gemm_ptr(False, False, rows, j1 - j0, layer.n_in, a, layer.n_in, params + layer.w + j0, n_out, z + j0, n_out)
    for i in range(rows):
        for j in range(j0, j1):
            z[i * n_out + j] = _activate(z[i * n_out + j] + b[j], layer.code, alpha)


cdef void _activation_gradients(floating* d, const floating* a, Py_ssize_t n, int code,
                                floating alpha) noexcept nogil:
    """d[:n] *= f'(z), from a = f(z)."""
    cdef Py_ssize_t i
    if code != IDENTITY:
        for i in range(n):
            d[i] = _activation_gradient(a[i], d[i], code, alpha)


cdef void _backward_share(floating* params, floating* grads, Layer layer, const floating* a, const floating* d,
                          floating* d_prev, int prev_code, floating prev_alpha, Py_ssize_t rows,
                          Py_ssize_t k0, Py_ssize_t k1) noexcept nogil:
    """Rows k0:k1 of one layer's [W; b] (row n_in is b) in the backward pass over a batch
    of ``rows`` rows, from d = d(loss)/dz (z = a @ W + b, before the activation): columns
    k0:k1 of d_prev = (d @ W.T) * f'(a) unless d_prev is NULL (f the previous layer's
    activation, a = f(its z)), and the gradient of those rows: a.T @ d, column sums of d."""
    cdef Py_ssize_t i, j, n_in = layer.n_in, n_out = layer.n_out
    cdef Py_ssize_t k_end = min(k1, n_in)
    cdef floating* db = grads + layer.w + n_in * n_out
    if k_end > k0:
        if d_prev != NULL:
            gemm_ptr(False, True, rows, k_end - k0, n_out, d, n_out, params + layer.w + k0 * n_out, n_out,
                     d_prev + k0, n_in)
            for i in range(rows):
                _activation_gradients(d_prev + i * n_in + k0, a + i * n_in + k0, k_end - k0, prev_code, prev_alpha)
        gemm_ptr(True, False, k_end - k0, n_out, rows, a + k0, n_in, d, n_out, grads + layer.w + k0 * n_out, n_out)
    if k1 > n_in:
        for j in range(n_out):
            db[j] = 0
        for i in range(rows):
            for j in range(n_out):
                db[j] += d[i * n_out + j]


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


cdef void _forward_one(floating* params, Layer layer, floating alpha, floating* acts) noexcept nogil:
    """One sample through one layer, a row of W at a time, skipping zero inputs."""
    cdef Py_ssize_t j
    cdef floating* z = acts + layer.outputs
    cdef const floating* b = params + layer.w + layer.n_in * layer.n_out
    _forward_rows(params, layer, acts + layer.inputs, z, 0, layer.n_in)
    for j in range(layer.n_out):
        z[j] = _activate(z[j] + b[j], layer.code, alpha)


cdef void _backward_one(floating* params, floating* grads, Layer layer, floating alpha, floating* acts,
                        floating* deltas, bint first, floating lr, bint in_place) noexcept nogil:
    """One sample back through one layer, as numba_engine._backward_one."""
    cdef Py_ssize_t j, k, n_out = layer.n_out
    cdef floating* d = deltas + layer.outputs
    cdef floating* row
    cdef floating* grad_row
    cdef floating ak
    cdef Py_ssize_t b = layer.w + layer.n_in * n_out
    if layer.code != IDENTITY:
        for j in range(n_out):
            d[j] = _activation_gradient(acts[layer.outputs + j], d[j], layer.code, alpha)
    for k in range(layer.n_in):
        row = params + layer.w + k * n_out
        if not first:
            deltas[layer.inputs + k] = _dot(row, d, n_out)
        ak = acts[layer.inputs + k]
        if not in_place:
            grad_row = grads + layer.w + k * n_out
            for j in range(n_out):
                grad_row[j] = ak * d[j]
        elif ak != 0:
            for j in range(n_out):
                row[j] -= lr * (ak * d[j])
    for j in range(n_out):
        if in_place:
            params[b + j] -= lr * d[j]
        else:
            grads[b + j] = d[j]


# --- online training on several threads ----------------------------------------------------
#
# Each thread owns a contiguous share of every layer's rows (input units) of W, with their
# b, m and v, and only it reads or writes them. Forward: each thread sums its rows' part
# of a @ W into its own scratch; after a barrier each thread adds up the parts, the bias
# and the activation for its share of the output units; another barrier before the next
# layer. Thread 0 computes the loss; a barrier. Backward: each thread computes, for its
# rows, the input gradient of those units (complete: a whole row times the delta) from the
# row before it changes, then the row's optimizer step: plain SGD, momentum and Adam
# update each parameter where its gradient is formed; a barrier after each layer.
# Clipping needs the whole gradient first and stays on one thread. Splitting W by
# columns, so that two threads wrote neighbouring parts of every row, made training
# several times slower than on one thread, and reading W by columns while writing it by
# rows moved half of it between the cores' caches every sample.

cdef extern from *:
    """
    #include <stdatomic.h>
    #include <limits.h>
    #include <sched.h>
    #ifdef __linux__
    #include <linux/futex.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    #endif
    typedef struct { atomic_int arrived; atomic_int phase; atomic_int sleepers; } fastnn_barrier;

    /* Pause instructions a waiting thread spins for (about 40 ns each on Zen 4) before it
       sleeps: long enough that on an idle machine the threads meet as fast as with
       endless spinning (waking a sleeper costs more than the wait), short enough that a
       thread waiting for one that lost its core to another process soon hands its own
       core over (docs/engine.md has the figures). */
    #define FASTNN_SPINS 1000

    static void fastnn_barrier_init(fastnn_barrier* b) {
        atomic_init(&b->arrived, 0);
        atomic_init(&b->phase, 0);
        atomic_init(&b->sleepers, 0);
    }

    static void fastnn_sleep(atomic_int* phase, int unchanged) {
    #ifdef __linux__
        syscall(SYS_futex, (int*)phase, FUTEX_WAIT_PRIVATE, unchanged, NULL, NULL, 0);
    #else
        (void)phase; (void)unchanged;
        sched_yield();
    #endif
    }

    static void fastnn_wake(atomic_int* phase) {
    #ifdef __linux__
        syscall(SYS_futex, (int*)phase, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    #else
        (void)phase;
    #endif
    }

    /* Wait until n threads have arrived; *phase is the caller's own copy of the phase.
       The last to arrive flips the phase and wakes the threads that went to sleep;
       the others spin FASTNN_SPINS pauses, then sleep until the phase flips. Both sides
       use sequentially consistent atomics: a sleeper counts itself before it checks
       the phase, the releaser flips the phase before it reads the count. */
    static void fastnn_barrier_wait(fastnn_barrier* b, int* phase, int n) {
        int next = !*phase;
        *phase = next;
        if (atomic_fetch_add(&b->arrived, 1) == n - 1) {
            atomic_store(&b->arrived, 0);
            atomic_store(&b->phase, next);
            if (atomic_load(&b->sleepers) > 0)
                fastnn_wake(&b->phase);
            return;
        }
        for (int i = 0; i < FASTNN_SPINS; i++) {
            if (atomic_load(&b->phase) == next)
                return;
    #if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
    #endif
        }
        atomic_fetch_add(&b->sleepers, 1);
        while (atomic_load(&b->phase) != next)
            fastnn_sleep(&b->phase, !next);
        atomic_fetch_sub(&b->sleepers, 1);
    }
    """
    ctypedef struct fastnn_barrier:
        pass
    void fastnn_barrier_init(fastnn_barrier* b) noexcept nogil
    void fastnn_barrier_wait(fastnn_barrier* b, int* phase, int n) noexcept nogil


cdef extern from *:
    """
    #if defined(__SSE__) || defined(__x86_64__)
    #include <xmmintrin.h>
    /* Flush denormal results to zero and read denormal inputs as zero (MXCSR FTZ, DAZ)
       in the calling thread; returns the previous control word for fastnn_restore_fp.
       The engine trains so (as TensorFlow's threads run; PyTorch offers it as
       torch.set_flush_denormal): Adam's moments of units that stopped learning
       decay through the denormal range, where every operation on them is many times
       slower (95 % of m was denormal in the random-label benchmark, and the optimizer
       step took most of the time); numbers below 1.2e-38 (float32) or 2.2e-308
       (float64) become 0. */
    static unsigned int fastnn_flush_denormals(void) {
        unsigned int previous = _mm_getcsr();
        _mm_setcsr(previous | 0x8040);
        return previous;
    }
    static void fastnn_restore_fp(unsigned int previous) { _mm_setcsr(previous); }
    #else
    static unsigned int fastnn_flush_denormals(void) { return 0; }
    static void fastnn_restore_fp(unsigned int previous) { (void)previous; }
    #endif
    """
    unsigned int fastnn_flush_denormals() noexcept nogil
    void fastnn_restore_fp(unsigned int previous) noexcept nogil


cdef struct Shared:
    fastnn_barrier barrier
    bint diverged
    Py_ssize_t epoch, index
    double value
    long steps


cdef inline Py_ssize_t _split(Py_ssize_t n, int t, int n_threads) noexcept nogil:
    """Where thread t's share of n rows or units starts (n for t = n_threads)."""
    return n * t // n_threads


cdef void _forward_units(const floating* params, Layer layer, floating alpha, const floating* partials,
                         Py_ssize_t stride, int n_threads, floating* z, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """z[j0:j1] = f(sum of the threads' partials + b) (partials of thread u at u * stride)."""
    cdef Py_ssize_t j
    cdef int u
    cdef floating total
    cdef const floating* b = params + layer.w + layer.n_in * layer.n_out
    for j in range(j0, j1):
        total = 0
        for u in range(n_threads):
            total += partials[u * stride + j]
        z[j] = _activate(total + b[j], layer.code, alpha)


cdef void _backward_rows(floating* params, floating* state_a, floating* state_b, Layer layer,
                         const floating* a, const floating* d, floating* d_prev, int prev_code,
                         floating prev_alpha, Py_ssize_t k0, Py_ssize_t k1, int optimizer, bint plain,
                         const floating* constants) noexcept nogil:
    """For one sample, rows k0:k1 of a layer's [W; b] (row n_in is the bias, input 1), from
    d = d(loss)/d(output): d_prev[k] = (W[k] @ d) * f'(a[k]) (the gradient at the previous
    layer's output, f its activation) from W[k] before it changes, unless d_prev is NULL;
    then the optimizer step of row k with gradient a[k] * d (plain SGD skips zero inputs,
    whose rows do not change)."""
    cdef Py_ssize_t j, k, n_out = layer.n_out, offset
    cdef floating ak
    cdef floating c[9]  # a local copy: the compiler cannot tell that constants does not alias params
    memcpy(c, constants, 9 * sizeof(floating))
    for k in range(k0, k1):
        offset = layer.w + k * n_out
        ak = a[k] if k < layer.n_in else 1
        if d_prev != NULL and k < layer.n_in:
            d_prev[k] = _activation_gradient(ak, _dot(params + offset, d, n_out), prev_code, prev_alpha)
        if plain:
            if ak != 0:
                for j in range(n_out):
                    params[offset + j] -= c[0] * (ak * d[j])
        elif optimizer == SGD:
            for j in range(n_out):
                _sgd_element(&params[offset + j], ak * d[j], &state_a[offset + j], c)
        else:
            for j in range(n_out):
                _adam_element(&params[offset + j], ak * d[j], &state_a[offset + j], &state_b[offset + j], c)


cdef void _online_thread(int t, int n_threads, Shared* shared, floating* p, floating* sa, floating* sb,
                         floating[:, ::1] backup, const int64_t[:, ::1] layers, const double[::1] alphas,
                         const Hyper* hyper, int optimizer, int loss, long step,
                         const floating[:, ::1] X, const int64_t[::1] labels, const floating[:, ::1] targets,
                         const floating[::1] weights, const int64_t[:, ::1] orders, Py_ssize_t n_epochs,
                         floating* a, floating* d, floating* partials, Py_ssize_t n_acts,
                         double[:, ::1] stats) noexcept nogil:
    """Thread t of n_threads of the parallel online loop. Thread 0 also keeps the backup,
    computes the loss, writes the statistics and the optimizer steps taken."""
    cdef Py_ssize_t n = X.shape[0], last = layers.shape[0] - 1
    cdef Py_ssize_t epoch, sample, i, layer, k
    cdef Layer top = _layer(layers, last), current
    cdef int phase = 0
    cdef bint plain = (optimizer == SGD and hyper.momentum == 0 and hyper.weight_decay == 0)
    cdef floating c[9]
    cdef const floating* x
    cdef const int64_t* lab
    cdef const floating* tgt
    cdef floating* partial = partials + t * n_acts
    cdef double value, loss_sum = 0, metric_sum = 0
    if optimizer == SGD:
        _sgd_constants(hyper, c)
    for epoch in range(n_epochs):
        if t == 0:
            _save_backup(backup, p, sa, sb)
            loss_sum = metric_sum = 0
        fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
        for sample in range(n):
            i = orders[epoch, sample] if orders.shape[0] > 0 else sample
            x = &X[i, 0]
            for layer in range(last + 1):
                current = _layer(layers, layer)
                _forward_rows(p, current, x if layer == 0 else a + current.inputs, partial + current.outputs,
                              _split(current.n_in, t, n_threads), _split(current.n_in, t + 1, n_threads))
                fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
                _forward_units(p, current, <floating>alphas[layer], partials + current.outputs, n_acts, n_threads,
                               a + current.outputs, _split(current.n_out, t, n_threads),
                               _split(current.n_out, t + 1, n_threads))
                fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
            if t == 0:
                lab = &labels[i] if labels.shape[0] > 0 else NULL
                tgt = &targets[i, 0] if targets.shape[0] > 0 else NULL
                value = _loss(loss, a + top.outputs, 1, top.n_out, lab, tgt,
                              &weights[i] if weights.shape[0] > 0 else NULL, _weight_total(NULL, i, 1, weights),
                              d + top.outputs)
                if value <= LOSS_LIMIT:
                    loss_sum += value
                    metric_sum += _metric(loss, a + top.outputs, 1, top.n_out, lab, tgt)
                    if top.code != IDENTITY:
                        for k in range(top.n_out):
                            d[top.outputs + k] = _activation_gradient(a[top.outputs + k], d[top.outputs + k],
                                                                      top.code, <floating>alphas[last])
                else:
                    shared.diverged, shared.epoch, shared.index, shared.value = True, epoch, sample, value
                    shared.steps = step
            fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
            if shared.diverged:
                return
            step += 1
            if optimizer == ADAM:
                _adam_constants(hyper, step, c)
            for layer in range(last, -1, -1):
                current = _layer(layers, layer)
                # Rows split evenly; the bias row (n_in) goes with the last thread's share.
                _backward_rows(p, sa, sb, current, x if layer == 0 else a + current.inputs, d + current.outputs,
                               NULL if layer == 0 else d + current.inputs,
                               IDENTITY if layer == 0 else _layer(layers, layer - 1).code,
                               0 if layer == 0 else <floating>alphas[layer - 1],
                               _split(current.n_in, t, n_threads),
                               _split(current.n_in, t + 1, n_threads) + (t == n_threads - 1),
                               optimizer, plain, c)
                # The next layer back, or the next sample's forward pass, reads all rows.
                fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
        if t == 0:
            stats[epoch, 0] = loss_sum
            stats[epoch, 1] = metric_sum
    if t == 0:
        shared.steps = step


# --- mini-batches on several threads ------------------------------------------------------
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
# 784-256-128-10 30 % slower: both threads packed all of W for every product).

cdef void _batch_thread(int t, int n_threads, Shared* shared, double* losses, floating* p, floating* g,
                        floating* sa, floating* sb, floating[:, ::1] backup, const int64_t[:, ::1] layers,
                        const double[::1] alphas, const Hyper* hyper, int optimizer, int loss, long step,
                        const floating[:, ::1] X, const int64_t[::1] labels, const floating[:, ::1] targets,
                        const floating[::1] weights, const int64_t[:, ::1] orders, Py_ssize_t n_epochs,
                        Py_ssize_t batch, floating* a, floating* d, floating* twork, floating* wwork,
                        int64_t* lwork, double[:, ::1] stats) noexcept nogil:
    """Thread t of n_threads of the parallel mini-batch loop; losses has a slot per thread.
    Thread 0 also keeps the backup, computes the metric and writes the statistics."""
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], last = layers.shape[0] - 1
    cdef Py_ssize_t n_batches = (n + batch - 1) // batch
    cdef Py_ssize_t epoch, index, lo, rows, r0, r1, layer, k0, k1, offset
    cdef Layer top = _layer(layers, last), current
    cdef Py_ssize_t n_out = top.n_out
    cdef int phase = 0, u
    cdef bint shuffled = orders.shape[0] > 0
    cdef const int64_t* order = NULL
    cdef const floating* x
    cdef const int64_t* lab
    cdef const floating* tgt
    cdef const floating* wgt
    cdef double value, loss_sum = 0, metric_sum = 0
    cdef floating c[9]
    for epoch in range(n_epochs):
        if t == 0:
            _save_backup(backup, p, sa, sb)
            loss_sum = metric_sum = 0
        fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
        if shuffled:
            order = &orders[epoch, 0]
        for index in range(n_batches):
            lo = index * batch
            rows = min(batch, n - lo)
            r0, r1 = _split(rows, t, n_threads), _split(rows, t + 1, n_threads)
            if shuffled:
                _gather(order, lo + r0, r1 - r0, X, labels, targets, weights, a + r0 * n_in, lwork + r0,
                        twork + r0 * n_out, wwork + r0)
                x, lab, tgt, wgt = a, lwork, twork, wwork
                fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
            else:
                x = &X[lo, 0]
                lab = &labels[lo] if labels.shape[0] > 0 else NULL
                tgt = &targets[lo, 0] if targets.shape[0] > 0 else NULL
                wgt = &weights[lo] if weights.shape[0] > 0 else NULL
            for layer in range(last + 1):
                current = _layer(layers, layer)
                _forward_batch(p, current, <floating>alphas[layer], x if layer == 0 else a + current.inputs,
                               a + current.outputs, rows, _split(current.n_out, t, n_threads),
                               _split(current.n_out, t + 1, n_threads))
                fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
            losses[t] = 0
            if r1 > r0:
                losses[t] = _loss(loss, a + top.outputs + r0 * n_out, r1 - r0, n_out,
                                  lab + r0 if labels.shape[0] > 0 else NULL,
                                  tgt + r0 * n_out if targets.shape[0] > 0 else NULL,
                                  wgt + r0 if weights.shape[0] > 0 else NULL,
                                  _weight_total(order, lo, rows, weights), d + top.outputs + r0 * n_out)
                _activation_gradients(d + top.outputs + r0 * n_out, a + top.outputs + r0 * n_out,
                                      (r1 - r0) * n_out, top.code, <floating>alphas[last])
            fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
            value = 0
            for u in range(n_threads):
                value += losses[u]
            if not value <= LOSS_LIMIT:
                if t == 0:
                    shared.diverged, shared.epoch, shared.index, shared.value = True, epoch, index, value
                    shared.steps = step
                return
            if t == 0:
                loss_sum += value * rows
                metric_sum += _metric(loss, a + top.outputs, rows, n_out, lab, tgt)
            step += 1
            _step_constants(hyper, optimizer, step, c)
            for layer in range(last, -1, -1):
                current = _layer(layers, layer)
                # Rows split evenly; the bias row (n_in) goes with the last thread's share.
                k0 = _split(current.n_in, t, n_threads)
                k1 = _split(current.n_in, t + 1, n_threads) + (t == n_threads - 1)
                _backward_share(p, g, current, x if layer == 0 else a + current.inputs, d + current.outputs,
                                NULL if layer == 0 else d + current.inputs,
                                _layer(layers, layer - 1).code if layer > 0 else IDENTITY,
                                <floating>alphas[layer - 1] if layer > 0 else 0, rows, k0, k1)
                offset = current.w + k0 * current.n_out
                _step(p + offset, g + offset, sa + offset if sa != NULL else NULL,
                      sb + offset if sb != NULL else NULL, (k1 - k0) * current.n_out, optimizer, c)
                # The next layer back reads all of this delta; the next step's forward pass all of W.
                fastnn_barrier_wait(&shared.barrier, &phase, n_threads)
        if t == 0:
            stats[epoch, 0] = loss_sum
            stats[epoch, 1] = metric_sum
    if t == 0:
        shared.steps = step


cdef tuple _run_parallel(bint online, int n_threads, floating[::1] params, floating[::1] grads,
                         floating[::1] state_a, floating[::1] state_b, floating[:, ::1] backup,
                         const int64_t[:, ::1] layers, const double[::1] alphas, const Hyper[::1] hyper,
                         int optimizer, int loss, long step, const floating[:, ::1] X,
                         const int64_t[::1] labels, const floating[:, ::1] targets,
                         const floating[::1] weights, const int64_t[:, ::1] orders, Py_ssize_t n_epochs,
                         Py_ssize_t batch, floating[::1] acts, floating[::1] deltas, floating[:, ::1] twork,
                         floating[::1] wwork, int64_t[::1] lwork, double[:, ::1] stats):
    """Online or mini-batch training on n_threads threads (see above); returns as _run does."""
    cdef Shared shared
    cdef Py_ssize_t n_acts = acts.shape[0]
    # Per-thread scratch: online, each thread's partial sums of every layer's outputs;
    # mini-batch, each thread's part of the batch's loss.
    cdef void* scratch = malloc(n_threads * (n_acts * sizeof(floating) if online else sizeof(double)))
    cdef floating* sa = &state_a[0] if state_a.shape[0] > 0 else NULL
    cdef floating* sb = &state_b[0] if state_b.shape[0] > 0 else NULL
    cdef int team
    cdef unsigned int fp
    if scratch == NULL:
        raise MemoryError("no memory for the threads' scratch space")
    fastnn_barrier_init(&shared.barrier)
    shared.diverged = False
    try:
        with nogil, parallel(num_threads=n_threads):
            team = openmp.omp_get_num_threads()  # fewer than asked when OpenMP says so
            fp = fastnn_flush_denormals()
            if online:
                _online_thread(threadid(), team, &shared, &params[0], sa, sb, backup, layers, alphas, &hyper[0],
                               optimizer, loss, step, X, labels, targets, weights, orders, n_epochs,
                               &acts[0], &deltas[0], <floating*>scratch, n_acts, stats)
            else:
                _batch_thread(threadid(), team, &shared, <double*>scratch, &params[0], &grads[0], sa, sb, backup,
                              layers, alphas, &hyper[0], optimizer, loss, step, X, labels, targets, weights,
                              orders, n_epochs, batch, &acts[0], &deltas[0], &twork[0, 0], &wwork[0], &lwork[0],
                              stats)
            fastnn_restore_fp(fp)
    finally:
        free(scratch)
    if shared.diverged:
        return shared.epoch, shared.index, shared.steps, shared.value
    return n_epochs, 0, shared.steps, 0.0


def _run(bint online, floating[::1] params, floating[::1] grads, floating[::1] state_a, floating[::1] state_b, floating[:, ::1] backup, const int64_t[:, ::1] layers,
         const double[::1] alphas, const Hyper[::1] hyper, int optimizer, int loss, long step,
         const floating[:, ::1] X, const int64_t[::1] labels, const floating[:, ::1] targets,
         const floating[::1] weights, const int64_t[:, ::1] orders, Py_ssize_t n_epochs,
         Py_ssize_t batch, floating[::1] acts, floating[::1] deltas, floating[:, ::1] twork,
         floating[::1] wwork, int64_t[::1] lwork, double[:, ::1] stats, int threads):
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], n_layers = layers.shape[0]
    cdef Py_ssize_t n_params = params.shape[0], last = n_layers - 1
    cdef Py_ssize_t epoch, index, lo, rows, layer
    cdef Layer top = _layer(layers, last), current
    cdef Py_ssize_t n_out = top.n_out
    cdef floating* p = &params[0]
    cdef floating* g = &grads[0]
    cdef floating* sa = &state_a[0] if state_a.shape[0] > 0 else NULL
    cdef floating* sb = &state_b[0] if state_b.shape[0] > 0 else NULL
    cdef floating* a = &acts[0]
    cdef floating* d = &deltas[0]
    cdef bint shuffled = orders.shape[0] > 0, weighted = weights.shape[0] > 0
    cdef bint has_labels = labels.shape[0] > 0, has_targets = targets.shape[0] > 0
    # Online and shuffled batches are gathered into the workspaces; otherwise the rows
    # lo:lo + rows are read where they are.
    cdef bint gather = online or shuffled
    cdef const int64_t* order
    cdef const floating* x
    cdef const int64_t* lab
    cdef const floating* tgt
    cdef const floating* wgt
    cdef double value = 0, loss_sum, metric_sum
    cdef bint in_place = (online and optimizer == SGD and hyper[0].momentum == 0 and hyper[0].weight_decay == 0
                          and hyper[0].clip_norm == 0)
    cdef bint diverged = False
    cdef floating lr = <floating>hyper[0].lr
    cdef unsigned int fp
    if threads > 1 and hyper[0].clip_norm == 0:
        return _run_parallel(online, threads, params, grads, state_a, state_b, backup, layers, alphas,
                             hyper, optimizer, loss, step, X, labels, targets, weights, orders, n_epochs, batch,
                             acts, deltas, twork, wwork, lwork, stats)
    if online:
        batch = 1
    cdef Py_ssize_t n_batches = (n + batch - 1) // batch
    with nogil:
        fp = fastnn_flush_denormals()
        for epoch in range(n_epochs):
            _save_backup(backup, p, sa, sb)
            order = &orders[epoch, 0] if shuffled else NULL
            loss_sum = metric_sum = 0
            for index in range(n_batches):
                lo = index * batch
                rows = min(batch, n - lo)
                if gather:
                    _gather(order, lo, rows, X, labels, targets, weights, a, &lwork[0], &twork[0, 0], &wwork[0])
                    x, lab, tgt, wgt = a, &lwork[0], &twork[0, 0], &wwork[0]
                else:
                    x = &X[lo, 0]
                    lab = &labels[lo] if has_labels else NULL
                    tgt = &targets[lo, 0] if has_targets else NULL
                    wgt = &weights[lo] if weighted else NULL
                if not weighted:
                    wgt = NULL
                for layer in range(n_layers):
                    current = _layer(layers, layer)
                    if online:
                        _forward_one(p, current, <floating>alphas[layer], a)
                    else:
                        _forward_batch(p, current, <floating>alphas[layer],
                                       x if layer == 0 else a + current.inputs, a + current.outputs, rows, 0,
                                       current.n_out)
                value = _loss(loss, a + top.outputs, rows, n_out, lab, tgt, wgt,
                              _weight_total(order, lo, rows, weights), d + top.outputs)
                if not value <= LOSS_LIMIT:
                    diverged = True
                    break
                loss_sum += value * rows
                metric_sum += _metric(loss, a + top.outputs, rows, n_out, lab, tgt)
                if not online:
                    _activation_gradients(d + top.outputs, a + top.outputs, rows * n_out, top.code,
                                          <floating>alphas[last])
                for layer in range(last, -1, -1):
                    current = _layer(layers, layer)
                    if online:
                        _backward_one(p, g, current, <floating>alphas[layer], a, d, layer == 0, lr, in_place)
                    else:
                        _backward_share(p, g, current, x if layer == 0 else a + current.inputs, d + current.outputs,
                                        NULL if layer == 0 else d + current.inputs,
                                        _layer(layers, layer - 1).code if layer > 0 else IDENTITY,
                                        <floating>alphas[layer - 1] if layer > 0 else 0, rows, 0, current.n_in + 1)
                step += 1
                if not in_place:
                    _update(p, g, sa, sb, n_params, &hyper[0], optimizer, step)
            if diverged:
                break
            stats[epoch, 0] = loss_sum
            stats[epoch, 1] = metric_sum
        fastnn_restore_fp(fp)
    if diverged:
        return epoch, index, step, value
    return n_epochs, 0, step, 0.0


def _train(online, model, data, work, run):
    """Unpack the bundles of abi.py for _run (which dispatches on the parameters' dtype)."""
    args = (online, model.params, model.grads, model.state_a, model.state_b, work.backup, model.layers,
            model.alphas, model.hyper, run.optimizer, run.loss, run.step, data.X, data.labels, data.targets,
            data.weights, data.orders, run.n_epochs, run.batch, work.acts, work.deltas, work.twork, work.wwork,
            work.lwork, work.stats, run.threads)
    if model.params.dtype != FLOAT64 and model.params.dtype != FLOAT32:
        raise TypeError(f"params must be float32 or float64; got {model.params.dtype}")
    return _run(*args)


def run_batches(model, data, work, run):
    """Mini-batch training for run.n_epochs: the bundles and result of abi.py."""
    return _train(False, model, data, work, run)


def run_online(model, data, work, run):
    """Online training (batch 1) for run.n_epochs: the bundles and result of abi.py."""
    return _train(True, model, data, work, run)
