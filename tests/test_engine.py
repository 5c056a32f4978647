"""The compiled training engine (fastnn/engine.py, kernels/*_engine): the same numbers as
the per-module path for every activation, loss, optimizer and batch mode, on one thread
and on several; fallback; the layout checks (compiling, allocation, divergence:
test_engine_runs.py)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import engine as engines
from fastnn import engine_layout
from fastnn.losses import SoftmaxCrossEntropy
from engine_cases import ACTIVATION_NAMES, BATCH_MODES, assert_same, data, mlp64, train_both


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
        runner = engines.Engine(engines.engine_module("cython"), engines.OneModel(model).bind(optimizer),
                                SoftmaxCrossEntropy(), X, y, None, batch, None)
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


@pytest.mark.skipif(engines.engine_module("cython") is None, reason="the Cython engine is not built")
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("loss", ["cross_entropy", "soft", "mse", "bce"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_the_cython_engine_is_the_cython_module_path_to_the_bit(activation, loss, optimizer):
    """Both compute with the same point functions (kernels/scalar.pxd), compiled alike, and
    the same BLAS calls: on one thread, 10 mini-batch steps give the same float64 parameters."""
    X, y = data(30)
    targets = _targets(loss, y, 3)
    results = []
    with fastnn.use_backend("cython"):
        for engine in (True, False):
            model = mlp64(activation)()
            model.fit(X[:23], targets[:23], loss="cross_entropy" if loss == "soft" else loss,
                      optimizer=OPTIMIZERS[optimizer](), epochs=2, batch_size=5, seed=3, verbose=0, engine=engine,
                      n_threads=1)
            results.append(model.params.copy())
    np.testing.assert_array_equal(*results)


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


def test_a_change_after_a_fit_is_refused_at_the_next(engine_backend, monkeypatch):
    """The layout check remembers the arrays a fit's check passed and skips the view checks
    while they are the same; a layer re-bound, or a view reshaped in place, after a fit
    that passed is refused at the next fit all the same."""
    X, y = data(8, n_classes=2)
    model = fastnn.mlp([3, 4, 2], seed=0)
    model.fit(X, y, epochs=1, verbose=0, engine=True)
    checks = []
    with monkeypatch.context() as patch:
        patch.setattr(engine_layout, "_check_views", lambda *args: checks.append(args))
        model.fit(X, y, epochs=1, verbose=0, engine=True)  # the same arrays: no view check
    assert checks == []
    model.layers[2].bind(np.zeros(10, np.float32), np.zeros(10, np.float32))
    with pytest.raises(ValueError, match=r"engine: W of Dense\(4, 2\) \(Dense layer 1\) is not its view"):
        model.fit(X, y, epochs=1, verbose=0, engine=True)
    model = fastnn.mlp([3, 4, 2], seed=0)
    model.fit(X, y, epochs=1, verbose=0, engine=True)
    model.layers[0].W.shape = (4, 3)
    with pytest.raises(ValueError, match=r"engine: W of Dense\(3, 4\) \(Dense layer 0\) is not its view"):
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
        runner = engines.Engine(engines.engine_module("{engine_backend}"), engines.OneModel(model).bind(optimizer),
                                fastnn.SoftmaxCrossEntropy(), np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]),
                                None, 2, None)
        for orders in (np.array([[[0, 1, 2, 10**9]]]), np.array([[[0, 1, 2]]])):
            try:
                runner.run(orders, 1)
                print("accepted")
            except ValueError as error:
                print("refused:", error)
        """)
    assert done.returncode == 0, done.stderr
    assert "refused: engine: orders must hold sample indices in [0, 4)" in done.stdout, done.stdout
    assert "refused: engine: orders must be a writable C-contiguous int64 array of shape (1, 1, 4)" in done.stdout


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
