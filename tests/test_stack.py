"""fastnn.Stack: K models trained together. Model k of a stack ends with the numbers of a
fit of model k alone (to the bit: each model trains on one thread by the same loop; to
rounding where the Cython engine trains models across SIMD lanes, online plain SGD),
on both engines and on the per-module path; early stopping, divergence and callbacks
stop one model and leave the others alone."""
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import engine as engines

BACKENDS = [name for name in ("numba", "cython") if engines.engine_module(name) is not None]
OPTIMIZERS = {
    "sgd": lambda lr: fastnn.SGD(lr),
    "momentum": lambda lr: fastnn.SGD(lr, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda lr: fastnn.SGD(lr, momentum=0.9, nesterov=True),
    "adam": lambda lr: fastnn.Adam(lr, weight_decay=1e-3),
    "adamw": lambda lr: fastnn.Adam(lr, weight_decay=0.1, decoupled=True),
}
LRS = [0.05, 0.1, 0.02]


def _data(n=30, loss="cross_entropy"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    labels = rng.integers(0, 3, n)
    y = labels if loss == "cross_entropy" else np.eye(3)[labels]
    return X, y, rng.random(n)


def _single(k, X, y, seed, lr, kind="adam", activation="tanh", dtype=np.float64, **options):
    model = fastnn.mlp([3, 6, 3], activation=activation, dtype=dtype, seed=k)
    model.fit(X, y, optimizer=OPTIMIZERS[kind](lr), seed=seed, verbose=0, n_threads=1, **options)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 7, "full"])
@pytest.mark.parametrize("kind", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_model_k_of_a_stack_is_the_fit_of_model_k_alone(backend, batch_size, kind, dtype):
    """Three models, one learning rate and one shuffling seed each, with sample weights, 10 epochs."""
    X, y, w = _data()
    options = dict(epochs=10, batch_size=batch_size, sample_weight=w)
    with fastnn.use_backend(backend):
        stack = fastnn.mlp([3, 6, 3], activation="tanh", dtype=dtype, seed=range(3))
        histories = stack.fit(X, y, optimizer=OPTIMIZERS[kind](LRS), seed=[10, 11, 12], verbose=0, n_threads=2,
                              **options)
        for k in range(3):
            alone = _single(k, X, y, 10 + k, LRS[k], kind, dtype=dtype, **options)
            if backend == "cython" and batch_size == 1 and kind == "sgd":  # across lanes: to rounding
                rtol = 1e-10 if dtype == np.float64 else 1e-4
                np.testing.assert_allclose(stack[k].params, alone.params, rtol=rtol, atol=rtol / 1000)
                np.testing.assert_allclose(histories[k].loss, alone.history.loss, rtol=rtol)
                continue
            np.testing.assert_array_equal(stack[k].params, alone.params)
            assert histories[k].loss == alone.history.loss and histories[k].metric == alone.history.metric
            for name in alone.optimizer.state:
                np.testing.assert_array_equal(stack[k].optimizer.state[name], alone.optimizer.state[name])
            assert stack[k].optimizer.steps == alone.optimizer.steps


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "soft", "mse", "bce"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_every_loss_and_one_shared_order(backend, loss, activation):
    """One seed: every model sees the batch order of a single fit with that seed; clipping too."""
    X, y, _ = _data(loss=loss)
    name = {"soft": "cross_entropy"}.get(loss, loss)
    options = dict(loss=name, epochs=3, batch_size=8, clip_norm=0.5)
    with fastnn.use_backend(backend):
        stack = fastnn.mlp([3, 6, 3], activation=activation, dtype=np.float64, seed=range(2))
        stack.fit(X, y, optimizer=OPTIMIZERS["adam"](0.01), seed=5, verbose=0, **options)
        for k in range(2):
            alone = _single(k, X, y, 5, 0.01, "adam", activation, **options)
            np.testing.assert_array_equal(stack[k].params, alone.params)


def test_the_per_module_path_trains_a_stack_alike():
    X, y, w = _data()
    stack = fastnn.mlp([3, 6, 3], activation="tanh", dtype=np.float64, seed=range(2))
    stack.fit(X, y, optimizer=OPTIMIZERS["momentum"]([0.05, 0.1]), epochs=3, batch_size=4, seed=[1, 2],
              sample_weight=w, engine=False, verbose=0)
    for k in range(2):
        alone = _single(k, X, y, 1 + k, [0.05, 0.1][k], "momentum", epochs=3, batch_size=4, sample_weight=w,
                        engine=False)
        np.testing.assert_array_equal(stack[k].params, alone.params)


def test_a_stack_of_one_is_a_single_fit_and_fits_continue():
    """A second fit with the stack's optimizer carries its state over, as a model's does."""
    X, y, _ = _data()
    stack, model = fastnn.Stack([fastnn.mlp([3, 6, 3], dtype=np.float64, seed=4)]), fastnn.mlp(
        [3, 6, 3], dtype=np.float64, seed=4)
    for _ in range(2):
        stack.fit(X, y, optimizer=stack.optimizer or fastnn.Adam(0.01), epochs=2, seed=0, verbose=0)
        model.fit(X, y, optimizer=model.optimizer or fastnn.Adam(0.01), epochs=2, seed=0, verbose=0)
    np.testing.assert_array_equal(stack[0].params, model.params)
    assert stack[0].optimizer.steps == model.optimizer.steps == 4


def test_the_models_are_views_of_the_stack_and_copies_of_what_it_was_given():
    models = [fastnn.mlp([3, 4, 3], seed=k) for k in range(3)]
    stack = fastnn.Stack(models)
    assert np.shares_memory(stack[1].params, stack.params) and np.shares_memory(stack[1].layers[0].W, stack.params)
    assert not np.shares_memory(models[1].params, stack.params)
    np.testing.assert_array_equal(stack.params[1], models[1].params)
    stack[2].layers[0].W[0, 0] = 7
    assert stack.params[2, 0] == 7 and models[2].params[0] != 7
    X, y, _ = _data()
    before = stack.params.copy()
    stack[0].fit(X.astype(np.float32), y, epochs=1, verbose=0)  # a member trains alone, in its row
    assert not np.array_equal(stack.params[0], before[0])
    np.testing.assert_array_equal(stack.params[1:], before[1:])


def test_early_stopping_stops_each_model_on_its_own():
    X, y, _ = _data(60)
    X_val, y_val, _ = _data(20)
    options = dict(epochs=40, batch_size=10, validation_data=(X_val, y_val),
                   early_stopping=fastnn.EarlyStopping(patience=2))
    stack = fastnn.mlp([3, 6, 3], activation="tanh", dtype=np.float64, seed=range(3))
    histories = stack.fit(X, y, optimizer=OPTIMIZERS["momentum"]([0.5, 0.05, 0.2]), seed=[0, 1, 2], verbose=0,
                          **options)
    lengths = set()
    for k, lr in enumerate([0.5, 0.05, 0.2]):
        alone = _single(k, X, y, k, lr, "momentum", **options)
        np.testing.assert_array_equal(stack[k].params, alone.params)
        assert histories[k].val_loss == alone.history.val_loss
        assert (histories[k].stop_reason, histories[k].best_epoch) == (alone.history.stop_reason,
                                                                       alone.history.best_epoch)
        lengths.add(len(histories[k]))
    assert len(lengths) > 1, "the models should stop at different epochs"


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_a_diverging_model_is_flagged_and_the_others_go_on(backend):
    X, y, _ = _data()
    lrs = [0.05, 1e12, 0.1]
    with fastnn.use_backend(backend), pytest.warns(RuntimeWarning, match="model 1: the training loss became"):
        stack = fastnn.mlp([3, 6, 3], activation="relu", dtype=np.float64, seed=range(3))
        histories = stack.fit(X, y, optimizer=fastnn.SGD(lr=lrs), epochs=5, batch_size=5, seed=0, verbose=0)
    assert [h.diverged for h in histories] == [False, True, False]
    assert np.isfinite(stack.params).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in (0, 2):
            with fastnn.use_backend(backend):
                alone = _single(k, X, y, 0, lrs[k], "sgd", "relu", epochs=5, batch_size=5)
            np.testing.assert_array_equal(stack[k].params, alone.params)


def test_a_callback_stops_the_model_whose_history_it_gets():
    X, y, _ = _data()
    stack = fastnn.mlp([3, 6, 3], seed=range(2))
    histories = stack.fit(X.astype(np.float32), y, epochs=6, seed=[0, 1], verbose=0,
                          callbacks=[lambda history: history is stack[1].history and len(history) == 2])
    assert [len(h) for h in histories] == [6, 2] and histories[1].stop_reason == "callback"


def test_predictions_and_scores_per_model_and_of_the_ensemble():
    X, y, _ = _data()
    X = X.astype(np.float32)
    stack = fastnn.mlp([3, 6, 3], seed=range(4))
    stack.fit(X, y, epochs=3, seed=0, verbose=0)
    proba = stack.predict_proba(X)
    assert proba.shape == (4, len(X), 3) and stack.predict(X).shape == (4, len(X))
    for k in range(4):
        np.testing.assert_array_equal(proba[k], stack[k].predict_proba(X))
        assert stack.evaluate(X, y)["accuracy"][k] == stack[k].evaluate(X, y)["accuracy"]
    np.testing.assert_allclose(stack.ensemble_proba(X), proba.mean(axis=0))
    np.testing.assert_array_equal(stack.ensemble_predict(X), proba.mean(axis=0).argmax(axis=1))
    regression = fastnn.mlp([3, 4, 2], seed=range(2), loss="mse")
    np.testing.assert_allclose(regression.ensemble_predict(X), regression.outputs(X).mean(axis=0))


def test_bad_stacks_and_per_model_values_are_refused_with_the_argument_named():
    X, y, _ = _data()
    with pytest.raises(ValueError, match="at least one model"):
        fastnn.Stack([])
    with pytest.raises(ValueError, match="share one architecture"):
        fastnn.Stack([fastnn.mlp([3, 4, 2]), fastnn.mlp([3, 5, 2])])
    with pytest.raises(TypeError, match=r"models\[1\] must be a Sequential"):
        fastnn.Stack([fastnn.mlp([3, 4, 2]), "model"])
    stack = fastnn.mlp([3, 4, 3], seed=range(3))
    with pytest.raises(ValueError, match="seed must be one seed .* 2 seeds for a stack of 3"):
        stack.fit(X, y, seed=[0, 1], verbose=0)
    with pytest.raises(ValueError, match="for 2 models; it trains a stack of 2, not 3 models"):
        stack.fit(X, y, optimizer=fastnn.Adam(lr=[0.1, 0.2]), verbose=0)
    with pytest.raises(ValueError, match="validation_split with one seed per model"):
        stack.fit(X, y, seed=[0, 1, 2], validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="not one model"):
        fastnn.mlp([3, 4, 3]).fit(X, y, optimizer=fastnn.Adam(lr=[0.1, 0.2]), verbose=0)
    with pytest.raises(ValueError, match=r"lr\[1\] must be a finite number > 0"):
        fastnn.SGD(lr=[0.1, -1])
    np.testing.assert_array_equal(stack.params, fastnn.mlp([3, 4, 3], seed=range(3)).params)  # nothing trained


def test_a_saved_stack_loads_and_resumes_as_the_original_goes_on(tmp_path):
    """Per-model learning rates, Adam state and each model's Dropout generator survive the file."""
    X, y, _ = _data()
    stack = fastnn.mlp([3, 6, 3], dropout=0.2, dtype=np.float64, seed=range(3))
    options = dict(epochs=2, batch_size=8, seed=[0, 1, 2], verbose=0)
    stack.fit(X, y, optimizer=fastnn.Adam(lr=[0.01, 0.02, 0.03], weight_decay=1e-3), **options)
    stack.save(tmp_path / "stack.fnn")
    loaded = fastnn.Stack.load(tmp_path / "stack.fnn")
    assert isinstance(fastnn.load(tmp_path / "stack.fnn"), fastnn.Stack) and len(loaded) == 3
    np.testing.assert_array_equal(loaded.params, stack.params)
    assert [o.lr for o in loaded.optimizers] == [0.01, 0.02, 0.03] and loaded.optimizer.weight_decay == 1e-3
    for name in stack.state:
        np.testing.assert_array_equal(loaded.state[name], stack.state[name])
    stack.fit(X, y, optimizer=stack.optimizer, **options)
    loaded.fit(X, y, optimizer=loaded.optimizer, **options)
    np.testing.assert_array_equal(loaded.params, stack.params)
    assert [o.steps for o in loaded.optimizers] == [o.steps for o in stack.optimizers]
    with pytest.raises(TypeError, match="holds a Stack, not a Sequential"):
        fastnn.Sequential.load(tmp_path / "stack.fnn")
    fastnn.mlp([3, 4, 3], seed=range(2)).save(tmp_path / "unfitted.fnn")
    assert fastnn.load(tmp_path / "unfitted.fnn").optimizers is None
