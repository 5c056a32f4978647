"""How many threads a fit trains on: the cores this process may use, what other
processes run now, and whether a step's work pays for a second thread.

The Numba engine trains on BLAS's threads, set through threadpoolctl around its
compiled calls; the Cython engine runs threads of its own with BLAS on one. The
thresholds below were measured on 2-core machines (docs/engine.md).
"""
import contextlib
import math
import os
import threading
import time

import numpy as np
from threadpoolctl import ThreadpoolController

from .kernels import gemm

# Two BLAS threads pay once a step's matrix products reach this many flops: for
# 784-256-128-10 (1.007 MFLOP per sample) from batches of 30; below it the second
# thread's start and wait cost as much as it saves, or more (docs/engine.md).
TWO_THREAD_FLOPS = 3e7
# The Cython engine's own two threads (each multiplying its share of every layer, BLAS on
# one thread) pay from smaller steps: 100-100-100-10 at batch 32 (3.4 MFLOP) 0.93x,
# 64-64-10 at batch 128 (2.6 MFLOP) 1.07x, 784-64-32-10 at batch 64 (14 MFLOP) 1.23x,
# 784-256-128-10 at batch 16 (16 MFLOP) 1.45x (docs/engine.md).
OWN_TWO_THREAD_FLOPS = 5e6
# Per BLAS provider, the flops per step above which its own threads multiply faster than
# the engine's: OpenBLAS's from 1e9 (784-256-128-10, 1.007 MFLOP per sample: batch
# 1024-8192 0.83-0.95x on the engine's threads, batch 256-512 alike). MKL's never do
# (784-256-128-10 on the engine's threads: batch 1024 1.21-1.23x, 2048 1.04-1.08x, 4096
# 1.06-1.40x, 8192 even: 0.81-1.19x, median 1.0 of eight runs; Intel Xeon,
# docs/engine.md): providers not named here have no limit.
OWN_THREAD_MAX_FLOPS = {"openblas": 1e9}
# Online training on two threads (the Cython engine splits every layer between them)
# pays once one sample's step reaches this many flops: it meets at three barriers per
# layer and sample, ~0.1 µs each (784-64-32-10, 0.2 MFLOP: 1.35x; 100-100-100-10,
# 0.1 MFLOP: 1.0x; docs/engine.md).
ONLINE_TWO_THREAD_FLOPS = 2e5


def step_flops(sizes, batch=1):
    """Flops of one training step of an MLP with these layer sizes (784, 256, 128, 10: 1.007
    MFLOP per sample): 2·Σ in·out forward, as many for the weight gradients, and 2·Σ in·out
    over all layers but the first for the input gradients."""
    products = [n_in * n_out for n_in, n_out in zip(sizes, sizes[1:])]
    return batch * (4 * sum(products) + 2 * sum(products[1:]))


def layer_sizes(model):
    """[n_in, n_out of each Dense layer] of a Sequential model."""
    dense = model.dense_layers
    return [dense[0].in_features] + [d.out_features for d in dense]


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None; got {value!r}")
    return int(value)


def requested_threads(n_threads):
    """n_threads, else FASTNN_NUM_THREADS, else None (automatic), validated."""
    if n_threads is not None:
        return _positive_int("n_threads", n_threads)
    text = os.environ.get("FASTNN_NUM_THREADS", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise ValueError(f"FASTNN_NUM_THREADS must be a positive integer; got {text!r}")
    return value


def available_cores():
    """The cores this process may run on (its CPU affinity: taskset, a container's or a
    batch system's cpuset), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        return os.cpu_count() or 1


def _own_running_threads():
    """This process's threads that are running or runnable now (Linux /proc)."""
    own = 0
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/stat") as file:
            own += file.read().rsplit(")", 1)[1].split()[0] == "R"
    return own


# How long one reading of the other processes' running threads stands: thread_count asks
# once per fit, and fits called back to back (an epoch per call) pay for it once.
LOAD_READING_SECONDS = 1.0
_load_reading = (-math.inf, 0)


def _machine_running_threads():
    """The machine's threads that are running or runnable now (Linux /proc/loadavg)."""
    with open("/proc/loadavg") as file:
        return int(file.read().split()[3].split("/")[0])


def other_running_tasks():
    """Threads of other processes running or waiting to run (Linux: the machine's
    runnable tasks in /proc/loadavg less this process's in /proc/self/task); 0 where
    /proc cannot tell. The least of three readings 1 ms apart, so that a task passing
    through (a kernel thread, a short command) is not counted; each reading subtracts the
    larger of this process's counts just before and after it, since its own threads still
    spinning from the last call (BLAS's, the engine's) fall asleep at any moment. A
    reading stands for LOAD_READING_SECONDS."""
    global _load_reading
    taken, value = _load_reading
    if time.monotonic() - taken < LOAD_READING_SECONDS:
        return value
    try:
        readings = []
        for i in range(3):
            time.sleep(0.001 if i else 0)
            before = _own_running_threads()
            runnable = _machine_running_threads()
            readings.append(runnable - max(before, _own_running_threads()))
        value = max(0, min(readings))
    except (OSError, ValueError, IndexError):
        value = 0
    _load_reading = (time.monotonic(), value)
    return value


_controller = None
_running = 0
_running_lock = threading.Lock()


def _blas():
    """A threadpoolctl controller of the BLAS libraries (created once)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def forget_blas():
    """Let _blas find the BLAS libraries again (a provider was just loaded)."""
    global _controller
    _controller = None


def own_threads(module, clip_norm, model, batch):
    """Whether the engine module trains this model and batch size on threads of its own,
    with BLAS on one: the Cython engine does, online and for steps up to
    OWN_THREAD_MAX_FLOPS of the BLAS provider in use, unless the gradient is clipped (its norm needs the whole
    gradient first)."""
    return (getattr(module, "OWN_THREADS", False) and clip_norm is None
            and (batch == 1 or step_flops(layer_sizes(model), batch)
                 <= OWN_THREAD_MAX_FLOPS.get(gemm.installed().name, math.inf)))


def thread_count(n_threads, model, batch, engine_threads=False):
    """Threads for training ``model`` with this batch size: the engine's own threads when
    engine_threads (see own_threads), else BLAS threads (online training then has one).

    An explicit n_threads (or FASTNN_NUM_THREADS) wins. Otherwise one thread for steps
    under TWO_THREAD_FLOPS (OWN_TWO_THREAD_FLOPS with the engine's threads,
    ONLINE_TWO_THREAD_FLOPS online), else as many as the cores this process may use
    (available_cores) that no other process's thread is running on now
    (other_running_tasks) and the BLAS limit already in force allow (a sweep that limited
    BLAS to one thread per worker keeps it); one while another fit runs the engine in
    this process.
    """
    requested = requested_threads(n_threads)
    if requested is not None:
        return requested
    flops = step_flops(layer_sizes(model), batch)
    if batch == 1:
        worth_it = engine_threads and flops >= ONLINE_TWO_THREAD_FLOPS
    else:
        worth_it = flops >= (OWN_TWO_THREAD_FLOPS if engine_threads else TWO_THREAD_FLOPS)
    if not worth_it or _running > 0:
        return 1
    return min(_free_threads(), 2)


def _free_threads():
    """The cores this process may use that no other process's thread runs on now, within
    the BLAS limit already in force (at least one)."""
    limits = [lib.num_threads for lib in _blas().lib_controllers] or [1]
    return max(1, min(available_cores() - other_running_tasks(), *limits))


def model_threads(n_threads, n_models):
    """Threads for a stack of n_models models: each thread trains its share of the models
    in a compiled call of its own (BLAS on one thread), meeting the others only at the end
    of the chunk, so a second thread pays whenever there are two models and a free core.
    An explicit n_threads (or FASTNN_NUM_THREADS) wins, at most one thread per model;
    one while another fit runs the engine in this process."""
    requested = requested_threads(n_threads)
    if requested is not None:
        return min(requested, n_models)
    if n_models == 1 or _running > 0:
        return 1
    return min(_free_threads(), n_models)


@contextlib.contextmanager
def blas_limit(count):
    """Run the block with every BLAS library at ``count`` threads, as threadpoolctl's limit
    does, setting (and then restoring) only those not there already: threadpoolctl's limit
    reads every library's whole description first, some 10 us, which a fit asks for every call."""
    changed = [(library, library.num_threads) for library in _blas().lib_controllers
               if library.num_threads != count]
    for library, _ in changed:
        library.set_num_threads(count)
    try:
        yield
    finally:
        for library, previous in changed:
            library.set_num_threads(previous)


@contextlib.contextmanager
def blas_threads(count):
    """Run the block with ``count`` BLAS threads and count it as a running engine fit."""
    global _running
    with _running_lock:
        _running += 1
    try:
        with blas_limit(count):
            yield
    finally:
        with _running_lock:
            _running -= 1
