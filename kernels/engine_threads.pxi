# The Cython engine's threads (cython_engine.pxi): the barrier they meet at, the
# floating-point mode they train in, what they share, and how they split the work.
cimport openmp

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
    static void fastnn_barrier_meet(fastnn_barrier* b, int* phase, int n) {
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

    /* One thread has nothing to wait for: the test is inlined where the threads meet. */
    static inline void fastnn_barrier_wait(fastnn_barrier* b, int* phase, int n) {
        if (n > 1)
            fastnn_barrier_meet(b, phase, n);
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
    # The threads' barrier; whether and where a batch's loss stopped the model in training
    # (thread 0 writes them), and the optimizer steps it took.
    fastnn_barrier barrier
    bint diverged
    Py_ssize_t epoch, index
    double value
    long steps


cdef inline Py_ssize_t _split(Py_ssize_t n, int t, int n_threads) noexcept nogil:
    """Where thread t's share of n rows or units starts (n for t = n_threads); one thread
    divides nothing."""
    if t == 0:
        return 0
    return n if t == n_threads else n * t // n_threads


