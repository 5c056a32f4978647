"""The compiled training engine (fastnn/engine.py, kernels/*_engine): the same numbers as
the per-module path for every activation, loss, optimizer and batch mode; fallback;
no recompilation; no allocation per step; divergence; thread settings."""
import os
import re
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from numba import njit

import fastnn
from fastnn import engine as engines
from fastnn.kernels import numba_fp
from fastnn.losses import SoftmaxCrossEntropy

ENGINE_BACKENDS = [name for name in ("numba", "cython") if engines.engine_module(name) is not None]
ACTIVATION_NAMES = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]
# (samples, batch_size, epochs): 10 optimizer steps each. With 2 threads, the engine's
# threads in the Cython engine, BLAS's in the Numba engine; the two-thread mini-batches
# end with a batch of one row, so that one thread has no rows of it.
BATCH_MODES = {"online": (10, 1, 1), "online, 2 threads": (10, 1, 1), "mini-batch": (23, 5, 2),
               "mini-batch, 2 threads": (21, 5, 2), "full": (12, "full", 10), "full, 2 threads": (12, "full", 10)}


def data(n, n_features=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = rng.integers(0, n_classes, n)
    return X, y


def train_both(build, X, y, mode, optimizer=lambda: fastnn.SGD(0.1), **options):
    """Train build() with the engine and without it, 10 steps: [(params, history)] * 2."""
    n, batch_size, epochs = BATCH_MODES[mode]
    if "sample_weight" in options:
        options["sample_weight"] = options["sample_weight"][:n]
    results = []
    for engine in (True, False):
        model = build()
        threads = 2 if engine and mode.endswith("2 threads") else None
        history = model.fit(X[:n], y[:n], optimizer=optimizer(), epochs=epochs, batch_size=batch_size, seed=3,
                            verbose=0, engine=engine, n_threads=threads, **options)
        results.append((model.params.copy(), history))
    return results


def assert_same(engine_result, module_result):
    (p_engine, h_engine), (p_module, h_module) = engine_result, module_result
    np.testing.assert_allclose(p_engine, p_module, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(h_engine.loss, h_module.loss, rtol=1e-5)
    np.testing.assert_allclose(h_engine.metric, h_module.metric, rtol=1e-5, atol=1e-12)


def mlp64(activation, output_activation=None, sizes=(3, 6, 5, 3)):
    return lambda: fastnn.mlp(list(sizes), activation=activation, output_activation=output_activation,
                              dtype=np.float64, seed=1)


@pytest.mark.parametrize("mode", BATCH_MODES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activations_match_the_module_path(engine_backend, activation, mode):
    X, y = data(30)
    assert_same(*train_both(mlp64(activation), X, y, mode))


def test_leaky_relu_slope_is_used(engine_backend):
    X, y = data(30)
    build = lambda: fastnn.Sequential(fastnn.Dense(3, 4, dtype=np.float64, seed=0), fastnn.LeakyReLU(0.3),
                                      fastnn.Dense(4, 3, dtype=np.float64, seed=1))
    assert_same(*train_both(build, X, y, "mini-batch"))


def _targets(loss, y, n_outputs):
    if loss == "soft":
        t = np.full((len(y), n_outputs), 0.1)
        t[np.arange(len(y)), y] = 0.8
        return t
    if loss == "bce":
        return np.eye(n_outputs)[y]
    if loss == "mse":
        return np.random.default_rng(5).standard_normal((len(y), n_outputs))
    return y


@pytest.mark.parametrize("mode", BATCH_MODES)
@pytest.mark.parametrize("loss", ["cross_entropy", "soft", "mse", "bce"])
def test_losses_match_the_module_path(engine_backend, loss, mode):
    X, y = data(30)
    targets = _targets(loss, y, 3)
    name = "cross_entropy" if loss == "soft" else loss
    assert_same(*train_both(mlp64("tanh"), X, targets, mode, loss=name))


@pytest.mark.parametrize("mode", BATCH_MODES)
def test_output_activation_matches_the_module_path(engine_backend, mode):
    X, y = data(30)
    targets = np.random.default_rng(2).random((30, 3))
    assert_same(*train_both(mlp64("relu", output_activation="sigmoid"), X, targets, mode, loss="mse"))


OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(0.1),
    "momentum": lambda: fastnn.SGD(0.05, momentum=0.9),
    "nesterov": lambda: fastnn.SGD(0.05, momentum=0.9, nesterov=True),
    "sgd_weight_decay": lambda: fastnn.SGD(0.1, weight_decay=0.01),
    "adam": lambda: fastnn.Adam(0.01),
    "adam_l2": lambda: fastnn.Adam(0.01, weight_decay=0.01),
    "adamw": lambda: fastnn.Adam(0.01, weight_decay=0.1, decoupled=True),
}


@pytest.mark.parametrize("mode", BATCH_MODES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizers_match_the_module_path(engine_backend, optimizer, mode):
    X, y = data(30)
    assert_same(*train_both(mlp64("relu"), X, y, mode, optimizer=OPTIMIZERS[optimizer]))


@pytest.mark.parametrize("mode", BATCH_MODES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sample_weights_and_clipping_match_the_module_path(engine_backend, optimizer, mode):
    X, y = data(30)
    weight = np.random.default_rng(4).uniform(0.5, 2.0, 30)
    for options in ({"sample_weight": weight}, {"clip_norm": 0.05}, {"sample_weight": weight, "clip_norm": 0.05}):
        assert_same(*train_both(mlp64("sigmoid"), X, y, mode, optimizer=OPTIMIZERS[optimizer], **options))


def test_unshuffled_and_per_epoch_work_match_the_module_path(engine_backend):
    X, y = data(40)
    results = []
    for engine in (True, False):
        model = mlp64("tanh")()
        seen = []
        history = model.fit(X, y, optimizer=fastnn.SGD(0.1, schedule=fastnn.StepDecay(2, 0.5)), epochs=6,
                            batch_size=6, shuffle=False, validation_split=0.25, seed=0, verbose=0,
                            callbacks=[lambda h: seen.append(h.loss[-1])], engine=engine)
        results.append((model.params.copy(), history))
        assert len(seen) == 6
    assert_same(*results)
    np.testing.assert_allclose(results[0][1].val_loss, results[1][1].val_loss, rtol=1e-5)


def test_many_epochs_in_one_call_match_the_module_path(engine_backend):
    X, y = data(10, n_features=2, n_classes=2)
    results = []
    for engine in (True, False):
        model = fastnn.mlp([2, 5, 5, 5, 2], activation="sigmoid", dtype=np.float64, seed=0)
        optimizer = fastnn.SGD(0.5)
        history = model.fit(X, y, optimizer=optimizer, epochs=300, batch_size=1, seed=0, verbose=0, engine=engine)
        results.append((model.params.copy(), history))
        assert optimizer.steps == 3000 and optimizer.epochs == 300
    assert_same(*results)
    assert results[0][1].epoch == list(range(1, 301))


def test_float32_matches_the_module_path(engine_backend):
    X, y = data(30)
    build = lambda: fastnn.mlp([3, 6, 3], activation="tanh", seed=1)
    for mode in BATCH_MODES:
        (p_engine, _), (p_module, _) = train_both(build, X, y, mode, optimizer=lambda: fastnn.Adam(0.01))
        assert p_engine.dtype == np.float32
        np.testing.assert_allclose(p_engine, p_module, rtol=1e-4, atol=1e-6)


def test_optimizer_state_carries_over_between_engine_fits(engine_backend):
    X, y = data(12)
    once = mlp64("relu")()
    once.fit(X, y, optimizer=fastnn.Adam(0.01), epochs=2, batch_size=4, shuffle=False, verbose=0, engine=True)
    twice = mlp64("relu")()
    twice.fit(X, y, optimizer=fastnn.Adam(0.01), epochs=1, batch_size=4, shuffle=False, verbose=0, engine=True)
    twice.fit(X, y, optimizer=twice.optimizer, epochs=1, batch_size=4, shuffle=False, verbose=0, engine=True)
    np.testing.assert_array_equal(once.params, twice.params)
    assert twice.optimizer.steps == 6


# Fallback to the per-module path.

class CustomLoss(SoftmaxCrossEntropy):
    pass


@pytest.mark.parametrize("build,loss,reason", [
    (lambda: fastnn.mlp([3, 4, 3], dropout=0.2, seed=0), None, "Dropout"),
    (lambda: fastnn.Sequential(fastnn.Dense(3, 4), fastnn.Step(), fastnn.Dense(4, 3)), None, "Step"),
    (lambda: fastnn.Sequential(fastnn.Dense(3, 4), fastnn.ReLU(), fastnn.Tanh(), fastnn.Dense(4, 3)), None,
     "must follow a Dense layer"),
    (lambda: fastnn.mlp([3, 4, 3], seed=0), CustomLoss(), "CustomLoss"),
])
def test_unsupported_models_fall_back(engine_backend, build, loss, reason):
    X, y = data(12)
    model = build()
    optimizer = fastnn.SGD(0.1)
    assert reason in engines.unsupported(model, loss or SoftmaxCrossEntropy(), optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "Step" not in reason:
            model.fit(X, y, loss=loss, optimizer=optimizer, epochs=1, verbose=0)
            assert optimizer.steps == 1
    with pytest.raises(ValueError, match="engine=True: .*" + reason):
        build().fit(X, y, loss=loss, optimizer=fastnn.SGD(0.1), epochs=1, verbose=0, engine=True)


def test_the_numpy_backend_has_no_engine():
    X, y = data(12)
    with fastnn.use_backend("numpy"):
        assert engines.plan("auto", fastnn.mlp([3, 3], seed=0), SoftmaxCrossEntropy(), fastnn.SGD(0.1)) is None
        with pytest.raises(ValueError, match="'numpy' has no compiled engine"):
            fastnn.mlp([3, 3], seed=0).fit(X, y, epochs=1, verbose=0, engine=True)


def test_fit_says_once_at_verbose_1_why_the_engine_is_not_used(engine_backend, capsys):
    X, y = data(12)
    fastnn.mlp([3, 4, 3], dropout=0.2, seed=0).fit(X, y, epochs=3, batch_size=4, verbose=1)
    lines = [line for line in capsys.readouterr().err.splitlines() if "compiled engine" in line]
    assert len(lines) == 1 and "Dropout(p=0.2)" in lines[0] and "one module call at a time" in lines[0]
    fastnn.mlp([3, 4, 3], dropout=0.2, seed=0).fit(X, y, epochs=3, verbose=0)
    fastnn.mlp([3, 4, 3], seed=0).fit(X, y, epochs=3, verbose=1)
    assert "compiled engine" not in capsys.readouterr().err


def test_engine_argument_is_checked():
    X, y = data(12)
    with pytest.raises(ValueError, match="engine must be 'auto', True or False; got 'yes'"):
        fastnn.mlp([3, 3], seed=0).fit(X, y, epochs=1, verbose=0, engine="yes")


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
    engine = engines.Engine(engines.engine_module(engine_backend), model, loss, optimizer, X.astype(np.float32),
                            loss.targets(y, 4, model.dtype), None, batch, None, threads)
    orders = np.tile(np.arange(n), (1, 1))
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
    # within the few hundred bytes it varies by from call to call (argument typing caches)
    assert long[1] == short[1] and abs(long[0] - short[0]) < 512
    assert short[0] < 8000  # per call: the returned tuple, Cython's memoryview objects


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


# Threads.

SHARED_CORE = """
import os, sys
import numpy as np
import fastnn
from fastnn import engine as engines
from fastnn.losses import SoftmaxCrossEntropy

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
rng = np.random.default_rng(0)
X, y = rng.standard_normal((64, 20)), rng.integers(0, 3, 64)
results = []
for threads in (1, 2):
    model = fastnn.mlp([20, 16, 3], dtype=np.float64, seed=0)
    optimizer = fastnn.Adam(0.01)
    optimizer.bind(model.n_params, model.dtype)
    for batch in (1, 8):
        runner = engines.Engine(engines.engine_module("cython"), model, SoftmaxCrossEntropy(), optimizer,
                                X, y, None, batch, None)
        runner.threads = threads  # two threads on one core: every wait ends asleep
        runner.run(None, 3)
    results.append(model.params.copy())
print(np.abs(results[0] - results[1]).max())
"""


@pytest.mark.skipif(engines.engine_module("cython") is None or not hasattr(os, "sched_setaffinity"),
                    reason="needs the Cython engine and CPU affinity")
def test_two_engine_threads_sharing_one_core_train_alike(tmp_path):
    result = subprocess.run([sys.executable, "-c", SHARED_CORE], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=True)
    assert float(result.stdout) < 1e-12


@pytest.mark.skipif(engines.engine_module("cython") is None, reason="the Cython engine is not built")
def test_the_cython_engine_for_any_cpu_matches_the_module_path(monkeypatch):
    """engine_module loads the AVX2 build where the CPU has it; the portable build must
    train alike on the CPUs without it."""
    monkeypatch.setattr(fastnn.kernels, "cpu_has_avx2", lambda: False)
    assert engines.engine_module("cython").__name__.endswith(".cython_engine")
    X, y = data(30)
    with fastnn.use_backend("cython"):
        for mode in BATCH_MODES:
            for optimizer in ("momentum", "adam"):
                assert_same(*train_both(mlp64("tanh"), X, y, mode, optimizer=OPTIMIZERS[optimizer]))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_more_threads_than_cores_still_train_alike(engine_backend, batch_size):
    X, y = data(30)
    results = [mlp64("tanh")() for _ in range(2)]
    for model, engine in zip(results, (True, False)):
        model.fit(X[:10], y[:10], optimizer=fastnn.SGD(0.1), epochs=1, batch_size=batch_size, seed=3, verbose=0,
                  engine=engine, n_threads=4 * (os.cpu_count() or 1) if engine else None)
    np.testing.assert_allclose(results[0].params, results[1].params, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("mode", BATCH_MODES)
def test_layers_narrower_than_the_threads_train_alike(engine_backend, mode):
    """One input and one output unit: with two threads, one has no rows or columns of them."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 1))
    y = np.sin(X)
    build = lambda: fastnn.mlp([1, 3, 1], activation="tanh", dtype=np.float64, seed=1)  # noqa: E731
    assert_same(*train_both(build, X, y, mode, loss="mse", optimizer=lambda: fastnn.Adam(0.01)))


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


def test_changing_the_layout_after_a_fit_is_refused(isolated, engine_backend):
    """What made the engine read and write out of bounds (a longer or shorter params, a
    changed in_features, a replaced layer, optimizer state re-bound for another size between
    epochs) is refused with a clear error (a fresh process: unchecked, these crashed)."""
    done = isolated(f"""
        import numpy as np, fastnn
        fastnn.set_backend("{engine_backend}")
        X, y = np.random.default_rng(0).standard_normal((64, 784)), np.arange(64) % 10
        m = fastnn.mlp([784, 64, 10], seed=0)
        m.fit(X, y, epochs=1, verbose=0)

        def longer(): m.params = np.zeros(m.n_params + 10**6, np.float32)
        def shorter(): m.params = np.zeros(10, np.float32)
        def wider(): m.layers[0].in_features = 5000
        def replaced(): m.layers[0] = fastnn.Dense(784, 4096)
        def rebound(): m.fit(X, y, epochs=3, verbose=0, callbacks=[lambda history: m.optimizer.bind(10, np.float32)])
        for change in (longer, shorter, wider, replaced, rebound):
            try:
                change()
                print(change.__name__, "accepted")
            except (ValueError, TypeError, AttributeError) as error:
                print(change.__name__, "refused:", type(error).__name__, error)
        """)
    assert done.returncode == 0, done.stderr
    for name in ("longer", "shorter", "wider", "replaced"):
        assert f"{name} refused:" in done.stdout, done.stdout
    assert "rebound refused: ValueError engine: optimizer state m must be" in done.stdout, done.stdout


def test_a_layer_bound_to_other_buffers_is_refused(engine_backend):
    """A Dense layer re-bound to buffers of its own no longer shows the weights fit trains:
    the engine refuses it instead of training one array while predict reads another."""
    model = fastnn.mlp([3, 4, 2], seed=0)
    model.layers[2].bind(np.zeros(10, np.float32), np.zeros(10, np.float32))
    X, y = data(8, n_classes=2)
    with pytest.raises(ValueError, match=r"engine: W of Dense\(4, 2\) \(Dense layer 1\) is not its view"):
        model.fit(X, y, epochs=1, verbose=0, engine=True)


def test_workspaces_follow_the_activations(engine_backend):
    """A LeakyReLU slope changed between fits is the slope the engine trains with (its
    workspace is keyed by the layer table, slopes included)."""
    X, y = data(12)
    results = []
    for engine in (True, False):
        model = fastnn.Sequential(fastnn.Dense(3, 5, seed=0), fastnn.LeakyReLU(0.01), fastnn.Dense(5, 3, seed=1))
        model.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=1, batch_size=4, shuffle=False, verbose=0, engine=engine)
        model.layers[1].alpha = 0.5
        model.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=2, batch_size=4, shuffle=False, verbose=0, engine=engine)
        results.append(model.params.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-7)


def test_engine_checks_the_orders_it_is_given(isolated, engine_backend):
    """Engine.run refuses sample orders of the wrong shape or out of range (a fresh process:
    unchecked, the compiled loop read past X)."""
    done = isolated(f"""
        import numpy as np, fastnn
        from fastnn import engine as engines
        model = fastnn.mlp([3, 2], seed=0)
        optimizer = fastnn.SGD(0.1)
        optimizer.bind(model.n_params, model.dtype)
        runner = engines.Engine(engines.engine_module("{engine_backend}"), model, fastnn.SoftmaxCrossEntropy(),
                                optimizer, np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]), None, 2, None)
        for orders in (np.array([[0, 1, 2, 10**9]]), np.array([[0, 1, 2]])):
            try:
                runner.run(orders, 1)
                print("accepted")
            except ValueError as error:
                print("refused:", error)
        """)
    assert done.returncode == 0, done.stderr
    assert "refused: engine: orders must hold sample indices in [0, 4)" in done.stdout, done.stdout
    assert "refused: engine: orders must be a writable C-contiguous int64 array of shape (1, 4)" in done.stdout


class ChangedForward(fastnn.Sequential):
    def forward(self, x):
        return 2 * super().forward(x)


class ExtraMethod(fastnn.Sequential):
    def describe(self):
        return "a Sequential with a method of its own"


def test_subclasses_train_on_the_engine_unless_they_change_forward_or_backward():
    layers = lambda: (fastnn.Dense(3, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 3, seed=1))  # noqa: E731
    loss, optimizer = SoftmaxCrossEntropy(), fastnn.SGD(0.1)
    assert "ChangedForward" in engines.unsupported(ChangedForward(*layers()), loss, optimizer)
    assert engines.unsupported(ExtraMethod(*layers()), loss, optimizer) is None
