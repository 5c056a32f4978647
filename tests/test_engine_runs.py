"""The engine as a process sees it: compiling once (and saying so), no allocation per
step, divergence, the floating-point control word, warm-up, Numba's cache."""
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from numba import njit

import fastnn
from fastnn import engine as engines
from fastnn.kernels import numba_fp
from fastnn.losses import SoftmaxCrossEntropy
from engine_cases import ENGINE_BACKENDS, data


# Compilation, allocation, divergence.

TINY_NUMBA_MODULE = """
from numba import njit


@njit(cache=True)
def tiny(x):
    return x + 1
"""
COMPILES = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from fastnn.engine import compiles
import tiny


def run(*args):
    return tiny.tiny(*args)


run.compiled = tiny.tiny
before = compiles(run, (1.0,))
run(1.0)
print(before, compiles(run, (1.0,)), compiles(run, (np.zeros(3),)))
"""


def test_compiles_tells_a_first_compile_from_a_cached_one(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY_NUMBA_MODULE)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", COMPILES, str(tmp_path)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=True).stdout.split() for _ in range(2)]
    assert runs == [["True", "False", "True"], ["False", "False", "True"]]
    cython = engines.engine_module("cython")
    if cython is not None:  # nothing to compile
        assert not engines.compiles(cython.run_batches, ())


def test_a_numba_compile_is_announced_before_it_starts_and_timed(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(engines, "compiles", lambda run, args: calls.append(run) or True)
    X, y = data(12)
    with fastnn.use_backend("numba"):
        fastnn.mlp([3, 4, 3], seed=0).fit(X, y, epochs=3, batch_size=4, verbose=0)
    err = capsys.readouterr().err.splitlines()
    assert len(calls) == 1
    assert err[0] == ("fastnn: compiling the Numba engine's mini-batch loop for float32 (first run only: "
                      "later runs load it from Numba's cache) ...")
    assert re.fullmatch(r"fastnn: compiled in \d+\.\d s \(with a training chunk\)", err[1])
    fastnn.warmup("numba")
    assert re.findall(r"compiling the Numba engine's (\S+) loop for (\w+)", capsys.readouterr().err) == \
        [("online", "float32"), ("mini-batch", "float32"), ("online", "float64"), ("mini-batch", "float64")]


def test_new_batch_sizes_do_not_recompile():
    module = engines.engine_module("numba")
    X, y = data(50)
    with fastnn.use_backend("numba"):
        for dtype in (np.float32, np.float64):
            fastnn.mlp([3, 4, 3], dtype=dtype, seed=0).fit(X, y, epochs=1, batch_size=8, verbose=0)
            fastnn.mlp([3, 4, 3], dtype=dtype, seed=0).fit(X, y, epochs=1, batch_size=1, verbose=0)
        counts = len(module.run_batches.compiled.signatures), len(module.run_online.compiled.signatures)
        for batch_size in (3, 7, 16, 49, 1):
            for dtype in (np.float32, np.float64):
                model = fastnn.mlp([3, 5, 3], dtype=dtype, seed=0)
                model.fit(X[:49], y[:49], epochs=2, batch_size=batch_size, verbose=0,
                          sample_weight=np.ones(49), optimizer="sgd", clip_norm=1.0)
                model.fit(X, np.eye(3)[y], epochs=1, batch_size=batch_size, verbose=0, shuffle=False)
        assert (len(module.run_batches.compiled.signatures), len(module.run_online.compiled.signatures)) == counts


def _allocations(engine_backend, n, batch, threads):
    """(bytes traced by tracemalloc, NRT allocations) of one engine call over n samples."""
    from numba.core.runtime import _nrt_python, rtsys

    X, y = data(n, n_features=20, n_classes=4)
    model = fastnn.mlp([20, 16, 4], seed=0)
    optimizer = fastnn.Adam(0.01)
    optimizer.bind(model.n_params, model.dtype)
    loss = SoftmaxCrossEntropy()
    engine = engines.Engine(engines.engine_module(engine_backend), engines.OneModel(model).bind(optimizer), loss,
                            X.astype(np.float32), loss.targets(y, 4, model.dtype), None, batch, None, threads)
    orders = np.tile(np.arange(n), (1, 1, 1))
    engine.run(orders, 1)
    _nrt_python.memsys_enable_stats()
    tracemalloc.start()
    try:
        before = rtsys.get_allocation_stats().alloc
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        engine.run(orders, 1)
        peak = tracemalloc.get_traced_memory()[1] - start
        return peak, rtsys.get_allocation_stats().alloc - before
    finally:
        tracemalloc.stop()
        _nrt_python.memsys_disable_stats()


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("threads", [1, 2])
def test_steps_allocate_nothing(engine_backend, batch, threads):
    short = _allocations(engine_backend, 300 * batch, batch, threads)
    long = _allocations(engine_backend, 1300 * batch, batch, threads)
    # 1,000 more steps: not one more compiled allocation, and the Python heap's peak only
    # within the hundreds of bytes it varies by from call to call (argument typing caches)
    assert long[1] == short[1] and abs(long[0] - short[0]) < 2048
    assert short[0] < 10000  # per call: the returned tuple, Cython's memoryview objects


@pytest.mark.parametrize("batch_size, n_threads", [(1, None), (1, 2), (4, None), (4, 2)])
def test_divergence_stops_like_the_module_path(engine_backend, batch_size, n_threads):
    X, y = data(40)
    X = X * 1e3
    results = []
    for engine in (True, False):
        # A linear net, not relu: the engine may sum in another order, and a kink of relu hit by the
        # last bit of a sum would be amplified by the learning rate into a different path.
        model = fastnn.mlp([3, 16, 3], activation="identity", dtype=np.float64, seed=0)
        optimizer = fastnn.SGD(1e6)
        with pytest.warns(RuntimeWarning, match="training loss became .* training stopped with the last finite"):
            history = model.fit(X, y, optimizer=optimizer, epochs=50, batch_size=batch_size, verbose=0,
                                seed=0, engine=engine, n_threads=n_threads if engine else None)
        assert history.diverged and history.stop_reason == "diverged"
        assert np.isfinite(model.params).all()
        results.append((model.params.copy(), len(history), optimizer.steps, optimizer.epochs))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    assert results[0][1:] == results[1][1:]


needs_x86 = pytest.mark.skipif(not numba_fp.X86, reason="MXCSR is x86's")


@njit
def _product(x, y):
    return x * y


@needs_x86
def test_flush_denormals_zeroes_denormal_results_until_restored():
    tiny, small = np.float32(1e-30), np.float32(1e-10)
    previous = numba_fp.flush_denormals()
    try:
        flushed = _product(tiny, small)
    finally:
        numba_fp.restore_fp(previous)
    restored = _product(tiny, small)
    assert flushed == 0
    assert 0 < restored < np.finfo(np.float32).tiny


@needs_x86
@pytest.mark.parametrize("batch_size", [1, 8])
def test_training_restores_the_floating_point_control_word(engine_backend, batch_size):
    X, y = data(32)
    before = numba_fp.flush_denormals()
    numba_fp.restore_fp(before)
    fastnn.mlp([3, 4, 3], seed=0).fit(X, y, epochs=2, batch_size=batch_size, optimizer="adam", verbose=0)
    after = numba_fp.flush_denormals()
    numba_fp.restore_fp(after)
    assert after == before and not before & numba_fp.FTZ_DAZ


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_warmup_compiles_both_dtypes_and_loops(backend):
    assert fastnn.warmup(backend) >= 0
    if backend == "numba":
        module = engines.engine_module("numba")
        dtypes = {sig[0][0].dtype.name for sig in module.run_batches.compiled.signatures
                  + module.run_online.compiled.signatures}
        assert dtypes == {"float32", "float64"}
    with pytest.raises(ValueError, match="'numpy' has no compiled engine"):
        fastnn.warmup("numpy")


def test_an_unwritable_numba_cache_dir_still_trains(tmp_path):
    import os
    import subprocess
    import sys

    script = ("import numpy as np, fastnn\n"
              "fastnn.set_backend('numba')\n"
              "m = fastnn.mlp([2, 3, 2], seed=0)\n"
              "h = m.fit(np.random.rand(10, 2), np.arange(10) % 2, epochs=2, batch_size=1, verbose=0)\n"
              "print(len(h))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": "/proc/fastnn-no-such-dir"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_a_repeated_numba_fit_does_not_type_its_arguments_in_python(monkeypatch):
    """compiles remembers the argument types it has checked: typing them in Python took
    as long as a small fit trains."""
    X, y = data(12)
    dispatcher = engines.engine_module("numba").run_batches.compiled
    typed = []
    original = dispatcher.typeof_pyval
    with fastnn.use_backend("numba"):
        model = fastnn.mlp([3, 4, 3], seed=0)
        model.fit(X, y, epochs=1, batch_size=4, verbose=0)
        monkeypatch.setattr(dispatcher, "typeof_pyval", lambda value: typed.append(value) or original(value))
        model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    assert typed == []
