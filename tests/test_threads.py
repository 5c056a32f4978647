"""Thread choice (fastnn/threads.py): the policy by step size, the cores this process
may use, other processes' running threads, explicit counts, and BLAS's threads set for
a fit and restored."""
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastnn
from fastnn import blas
from fastnn import engine as engines
from fastnn import threads
from fastnn.kernels import gemm
from fastnn.losses import SoftmaxCrossEntropy


def data(n):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3)), rng.integers(0, 3, n)


def test_thread_count_policy(monkeypatch):
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)  # as on an idle machine
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    tiny = fastnn.mlp([2, 5, 5, 5, 2], seed=0)
    big = fastnn.mlp([784, 256, 128, 10], seed=0)
    assert threads.thread_count(None, tiny, 8192) == 1
    assert threads.thread_count(None, big, 1) == 1
    assert threads.thread_count(None, big, 16) == 1  # 16 MFLOP per step: under TWO_THREAD_FLOPS
    assert threads.thread_count(None, tiny, 8192, engine_threads=True) == 1  # under OWN_TWO_THREAD_FLOPS
    with threadpool_limits(limits=2, user_api="blas"):
        assert threads.thread_count(None, big, 128) == min(2, os.cpu_count())
        assert threads.thread_count(None, big, 16, engine_threads=True) == min(2, os.cpu_count())
    with threadpool_limits(limits=1, user_api="blas"):  # a limit already in force (a sweep's) is kept
        assert threads.thread_count(None, big, 128) == 1
    assert threads.thread_count(3, tiny, 1) == 3
    monkeypatch.setenv("FASTNN_NUM_THREADS", "2")
    assert threads.thread_count(None, tiny, 1) == 2
    assert threads.thread_count(1, big, 8192) == 1


def test_engine_threads_policy(monkeypatch):
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)  # as on an idle machine
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    tiny = fastnn.mlp([2, 5, 5, 5, 2], seed=0)
    big = fastnn.mlp([784, 256, 128, 10], seed=0)
    with threadpool_limits(limits=2, user_api="blas"):
        assert threads.thread_count(None, big, 1, engine_threads=True) == min(2, os.cpu_count())
        assert threads.thread_count(None, big, 1, engine_threads=False) == 1
        assert threads.thread_count(None, tiny, 1, engine_threads=True) == 1  # under ONLINE_TWO_THREAD_FLOPS
    cython = engines.engine_module("cython")
    if cython is not None:
        assert threads.own_threads(cython, None, big, 1) and threads.own_threads(cython, None, big, 128)
        assert not threads.own_threads(cython, 1.0, big, 1)  # clipping needs the whole gradient
        # over OpenBLAS's OWN_THREAD_MAX_FLOPS: BLAS's threads; MKL's have no limit
        openblas = blas.load("openblas")
        monkeypatch.setattr(gemm, "installed", lambda: openblas)
        assert not threads.own_threads(cython, None, big, 8192)
        openblas.name = "mkl"
        assert threads.own_threads(cython, None, big, 8192)
    assert not threads.own_threads(engines.engine_module("numba"), None, big, 1)


def test_threads_follow_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    big = fastnn.mlp([784, 256, 128, 10], seed=0)
    with threadpool_limits(limits=2, user_api="blas"):
        assert threads.available_cores() == 1
        assert threads.thread_count(None, big, 128) == 1
        assert threads.thread_count(None, big, 16, engine_threads=True) == 1
    cython = engines.engine_module("cython")
    if cython is not None:
        X, y = np.zeros((4, 784), np.float32), np.zeros(4, np.int64)
        optimizer = fastnn.SGD(0.1)
        optimizer.bind(big.n_params, big.dtype)
        runner = engines.Engine(cython, engines.OneModel(big).bind(optimizer), SoftmaxCrossEntropy(), X, y, None, 1,
                                None, 2)
        assert runner.threads == 1


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="needs Linux's /proc")
def test_a_core_held_by_another_process_is_not_counted(monkeypatch):
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        while threads.other_running_tasks() < 1:  # until the busy loop runs
            assert time.monotonic() < deadline, "the busy process never showed as running"
    finally:
        busy.kill()
        busy.wait()
    big = fastnn.mlp([784, 256, 128, 10], seed=0)
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 1)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    with threadpool_limits(limits=2, user_api="blas"):
        assert threads.thread_count(None, big, 128) == 1
        assert threads.thread_count(None, big, 16, engine_threads=True) == 1
        assert threads.thread_count(2, big, 128) == 2  # an explicit count wins
    monkeypatch.setattr(threads, "other_running_tasks", lambda: 0)
    with threadpool_limits(limits=2, user_api="blas"):
        assert threads.thread_count(None, big, 128) == 2


def test_own_threads_falling_asleep_are_not_counted_as_others(monkeypatch):
    """Two of this process's threads spin when the machine is read and sleep when this
    process is read after: they are its own, not another process's (counting them made a
    default fit take one thread at random on an idle machine). A reading then stands."""
    own = iter([3, 1] * 3)
    monkeypatch.setattr(threads, "_own_running_threads", lambda: next(own))
    monkeypatch.setattr(threads, "_machine_running_threads", lambda: 3)
    monkeypatch.setattr(threads, "_load_reading", (-math.inf, 0))
    assert threads.other_running_tasks() == 0
    monkeypatch.setattr(threads, "_machine_running_threads", lambda: 5)
    assert threads.other_running_tasks() == 0  # the reading stands for LOAD_READING_SECONDS
    monkeypatch.setattr(threads, "_load_reading", (-math.inf, 0))
    own = iter([1] * 6)
    assert threads.other_running_tasks() == 4


@pytest.mark.parametrize("value", [0, -1, 1.5, "two", True])
def test_n_threads_is_validated(value):
    X, y = data(12)
    with pytest.raises(ValueError, match="n_threads must be a positive integer or None"):
        fastnn.mlp([3, 3], seed=0).fit(X, y, epochs=1, verbose=0, n_threads=value)


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_fastnn_num_threads_is_validated(monkeypatch, value):
    monkeypatch.setenv("FASTNN_NUM_THREADS", value)
    X, y = data(12)
    with pytest.raises(ValueError, match=f"FASTNN_NUM_THREADS must be a positive integer; got '{value}'"):
        fastnn.mlp([3, 3], seed=0).fit(X, y, epochs=1, verbose=0)


def test_threads_are_set_for_the_fit_and_restored(engine_backend):
    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    X, y = data(64)
    before = blas_threads()
    model = fastnn.mlp([3, 6, 5, 3], dtype=np.float64, seed=1)
    own = threads.own_threads(engines.engine_module(engine_backend), None, model, 32)
    params = []
    for n_threads in (1, 2):
        seen = []
        model = fastnn.mlp([3, 6, 5, 3], dtype=np.float64, seed=1)
        model.fit(X, y, epochs=2, verbose=0, seed=0, n_threads=n_threads, callbacks=[lambda h: seen.append(blas_threads())])
        assert seen == [[1 if own else n_threads] * len(before)] * 2  # BLAS on one thread under the engine's
        assert blas_threads() == before
        params.append(model.params)
    np.testing.assert_allclose(params[0], params[1], rtol=1e-12)
