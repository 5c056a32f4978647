"""The fit loop: batch modes, shuffling, validation, early stopping, clipping,
callbacks, sample weights, divergence, interruption and bad input."""
import math
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.losses import SoftmaxCrossEntropy


def blobs(rng, n=60, n_features=2, n_classes=2):
    y = np.arange(n) % n_classes
    X = rng.standard_normal((n, n_features)) * 0.5 + y[:, None]
    return X, y


@pytest.mark.parametrize("batch_size,steps_per_epoch", [(1, 60), (7, 9), (60, 1), ("full", 1)])
def test_batch_modes_count_updates(rng, batch_size, steps_per_epoch):
    X, y = blobs(rng)
    model = fastnn.mlp([2, 4, 2], seed=0)
    opt = fastnn.SGD(0.05)
    model.fit(X, y, optimizer=opt, epochs=3, batch_size=batch_size, verbose=0)
    assert opt.steps == 3 * steps_per_epoch


def test_full_batch_is_gradient_descent_on_the_whole_set(rng):
    X, y = blobs(rng, n=20)
    model = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    expected = model.params.copy()
    loss, grad = model.loss_and_grad(X, y)
    expected -= 0.5 * grad
    model.fit(X, y, optimizer=fastnn.SGD(0.5), epochs=1, batch_size="full", verbose=0)
    np.testing.assert_allclose(model.params, expected, rtol=1e-12)


def test_online_sgd_is_one_update_per_sample_in_order(rng):
    X, y = blobs(rng, n=5)
    model = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    manual = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    for i in range(5):
        _, grad = manual.loss_and_grad(X[i:i + 1], y[i:i + 1])
        manual.params[...] -= 0.1 * grad
    model.fit(X, y, optimizer=fastnn.SGD(0.1), epochs=1, batch_size=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.params, manual.params, rtol=1e-12)


def test_seeded_shuffling_is_reproducible(rng):
    X, y = blobs(rng)
    runs = []
    for seed in (1, 1, 2):
        model = fastnn.mlp([2, 4, 2], dtype=np.float64, seed=0)
        model.fit(X, y, optimizer="sgd", lr=0.1, epochs=2, batch_size=8, seed=seed, verbose=0)
        runs.append(model.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_history_records_every_epoch(rng):
    X, y = blobs(rng)
    history = fastnn.mlp([2, 4, 2], seed=0).fit(
        X, y, optimizer=fastnn.Adam(0.05), epochs=4, batch_size=10, validation_split=0.25, seed=0, verbose=0)
    assert history.epoch == [1, 2, 3, 4]
    assert len(history.loss) == len(history.val_loss) == len(history.val_metric) == len(history.time) == 4
    assert all(0 <= a <= 1 for a in history.val_metric + history.metric)
    assert history.loss[-1] < history.loss[0]
    assert history.stop_reason == "completed" and not history.diverged
    record = history.as_dict()
    assert record["val_accuracy"] == history.val_metric and "accuracy" in record


def test_validation_data_is_scored_with_r2_for_regression(rng):
    X = rng.standard_normal((80, 1))
    y = 3 * X[:, 0] + 1
    model = fastnn.mlp([1, 1], activation=None, dtype=np.float64, seed=0)
    history = model.fit(X[:60], y[:60], loss="mse", optimizer=fastnn.SGD(0.1), epochs=30, batch_size=10,
                        validation_data=(X[60:], y[60:]), verbose=0)
    assert history.metric_name == "r2"
    assert history.val_metric[-1] > 0.99


def test_validation_split_errors(rng):
    X, y = blobs(rng, n=4)
    model = fastnn.mlp([2, 2], seed=0)
    with pytest.raises(ValueError, match="leaves 0 of 4 samples"):
        model.fit(X, y, validation_split=0.1, verbose=0)
    with pytest.raises(ValueError, match="not both"):
        model.fit(X, y, validation_split=0.5, validation_data=(X, y), verbose=0)
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\)"):
        model.fit(X, y, validation_split=1.5, verbose=0)


def test_early_stopping_restores_the_best_weights(rng):
    X, y = blobs(rng)
    X_val, y_val = X[:20], 1 - y[:20]  # flipped labels: validation loss rises as training improves
    model = fastnn.mlp([2, 8, 2], seed=0)
    seen = []
    history = model.fit(X, y, optimizer=fastnn.Adam(0.05), epochs=200, batch_size=10, verbose=0,
                        validation_data=(X_val, y_val),
                        early_stopping=fastnn.EarlyStopping(patience=3, restore_best_weights=True),
                        callbacks=[lambda h: seen.append(model.params.copy())])
    assert history.stop_reason == "early_stopping"
    best = history.best_epoch
    assert len(history) == best + 3
    assert history.val_loss[best - 1] == min(history.val_loss)
    np.testing.assert_array_equal(model.params, seen[best - 1])


def test_early_stopping_on_training_loss_without_validation(rng):
    X, y = blobs(rng)
    history = fastnn.mlp([2, 4, 2], seed=0).fit(
        X, y, optimizer=fastnn.SGD(1e-9), epochs=50, verbose=0,
        early_stopping=fastnn.EarlyStopping(patience=2, min_delta=1e-3))
    assert history.stop_reason == "early_stopping" and len(history) == 3


def test_callback_returning_true_stops(rng):
    X, y = blobs(rng)
    history = fastnn.mlp([2, 2], seed=0).fit(X, y, epochs=10, verbose=0, callbacks=[lambda h: len(h) == 2])
    assert len(history) == 2 and history.stop_reason == "callback"


def test_gradient_clipping_bounds_the_step(rng):
    X, y = blobs(rng, n=10)
    model = fastnn.mlp([2, 4, 2], dtype=np.float64, seed=0)
    before = model.params.copy()
    _, grad = model.loss_and_grad(X, y)
    max_norm = 0.1 * np.linalg.norm(grad)
    model.fit(X, y, optimizer=fastnn.SGD(1.0), epochs=1, batch_size="full", clip_norm=max_norm, verbose=0)
    step = before - model.params
    assert np.linalg.norm(step) == pytest.approx(max_norm, rel=1e-9)
    np.testing.assert_allclose(step / np.linalg.norm(step), grad / np.linalg.norm(grad), rtol=1e-9)


def test_zero_sample_weight_removes_samples(rng):
    X, y = blobs(rng, n=12)
    weight = np.r_[np.ones(8), np.zeros(4)]
    a = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    b = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    a.fit(X, y, optimizer=fastnn.SGD(0.3), epochs=5, batch_size="full", sample_weight=weight, verbose=0)
    b.fit(X[:8], y[:8], optimizer=fastnn.SGD(0.3), epochs=5, batch_size="full", verbose=0)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12)


def test_divergence_stops_with_finite_weights(rng):
    X, y = blobs(rng)
    X = X * 1e3
    model = fastnn.mlp([2, 16, 2], seed=0)
    with pytest.warns(RuntimeWarning, match="training loss became .* training stopped with the last finite"):
        history = model.fit(X, y, optimizer=fastnn.SGD(1e6), epochs=50,
                            batch_size=4, verbose=0)
    assert history.diverged and history.stop_reason == "diverged"
    assert np.isfinite(model.params).all()


def test_keyboard_interrupt_leaves_the_last_completed_step(rng):
    X, y = blobs(rng, n=10)

    class InterruptingLoss(SoftmaxCrossEntropy):
        calls = 0

        def __call__(self, *args):
            self.calls += 1
            if self.calls == 4:
                raise KeyboardInterrupt
            return super().__call__(*args)

    model = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, loss=InterruptingLoss(), optimizer=fastnn.SGD(0.1), epochs=1, batch_size=2,
                  shuffle=False, verbose=0)
    reference = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    # The per-module path, as the interrupted fit (its loss is not the engine's): bit for bit.
    reference.fit(X[:6], y[:6], optimizer=fastnn.SGD(0.1), epochs=1, batch_size=2, shuffle=False, verbose=0,
                  engine=False)
    np.testing.assert_array_equal(model.params, reference.params)
    assert model.history.stop_reason == "interrupted"
    assert not model.training


def test_optimizer_state_carries_over_between_fits(rng):
    X, y = blobs(rng, n=8)
    once = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    once.fit(X, y, optimizer=fastnn.Adam(0.01), epochs=2, batch_size="full", shuffle=False, verbose=0)
    twice = fastnn.mlp([2, 3, 2], dtype=np.float64, seed=0)
    twice.fit(X, y, optimizer=fastnn.Adam(0.01), epochs=1, batch_size="full", shuffle=False, verbose=0)
    twice.fit(X, y, optimizer=twice.optimizer, epochs=1, batch_size="full", shuffle=False, verbose=0)
    np.testing.assert_array_equal(once.params, twice.params)


def test_progress_bar_shows_loss_accuracy_and_throughput(rng, capsys):
    X, y = blobs(rng)
    fastnn.mlp([2, 2], seed=0).fit(X, y, epochs=2, verbose=1, validation_split=0.2)
    err = capsys.readouterr().err
    assert "loss=" in err and "acc=" in err and "val_acc=" in err and "samples/s=" in err
    fastnn.mlp([2, 2], seed=0).fit(X, y, epochs=2, verbose=0)
    captured = capsys.readouterr()
    assert captured.err == captured.out == ""


def test_accepts_float64_fortran_and_strided_x(rng):
    X, y = blobs(rng)
    results = []
    for data in (X.astype(np.float32), np.asfortranarray(X), np.hstack([X, X])[:, :2]):
        model = fastnn.mlp([2, 3, 2], seed=0)
        model.fit(data, y, epochs=2, seed=0, verbose=0)
        results.append(model.params)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


@pytest.mark.parametrize("X,y,kwargs,error,message", [
    ([[np.nan, 1.0]] * 4, [0, 1, 0, 1], {}, ValueError, "X contains NaN or infinity"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"loss": "mse"}, ValueError, r"y must have shape \(n_samples, 2\)"),
    ([[0.0, 1.0]] * 4, [0, 1, 0], {}, ValueError, "X and y must have the same number of samples; got 4 and 3"),
    ([[0.0, 1.0, 2.0]] * 4, [0, 1, 0, 1], {}, ValueError, "X must have 2 features"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 2], {}, ValueError, r"labels must lie in \[0, 2\)"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 0.5], {}, ValueError, "non-integer values"),
    (np.zeros((0, 2)), [], {}, ValueError, "X is empty"),
    ([0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1], {}, ValueError, r"X must be 2-D .*reshape\(-1, 1\)"),
    ([["a", "b"]] * 4, [0, 1, 0, 1], {}, TypeError, "X must be numeric; got dtype <U1"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"batch_size": "half"}, ValueError, "batch_size must be"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"lr": 0.0}, ValueError, "lr must be a finite number > 0; got 0.0"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"epochs": 0}, ValueError, "epochs must be an integer >= 1; got 0"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"clip_norm": -1}, ValueError, "clip_norm must be a finite number > 0"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"clip_norm": "big"}, TypeError, "clip_norm must be a number; got 'big'"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"lr": "fast"}, TypeError, "lr must be a number; got 'fast'"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"seed": -1}, ValueError, "seed must be a non-negative int.*got -1"),
    # a fit that neither shuffles nor splits makes no Generator, and checks the seed all the same
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"seed": -1, "shuffle": False}, ValueError, "seed must be a non-negative"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"seed": "x", "shuffle": False}, TypeError, "seed must be an int, None"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1e30], {}, ValueError, r"labels must lie in \[0, 2\).*to 1e\+30"),
    ([[0.0, 1.0]] * 4, np.full(4, 2**64 - 1, np.uint64), {}, ValueError,
     r"labels must lie in \[0, 2\).*18446744073709551615 to 18446744073709551615"),
    ([[0.0, 1.0]] * 4, [[0.0, 1.0]] * 3 + [[0.0, 1e39]], {"loss": "mse"}, ValueError,
     "y contains NaN or infinity, or values beyond the range of float32"),
    (np.ma.masked_array([[0.0, 1.0]] * 4, mask=[[0, 1]] * 4), [0, 1, 0, 1], {}, TypeError,
     "X must be an array without a mask"),
    ([[0.0, 1.0]] * 4, np.ma.masked_array([0, 1, 0, 1]), {}, TypeError, "y must be an array without a mask"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"sample_weight": np.ma.masked_array([1, 1, 1, 1])}, TypeError,
     "sample_weight must be an array without a mask"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"sample_weight": [1, 1, 1]}, ValueError, "sample_weight must have shape"),
    ([[0.0, 1.0]] * 4, [0, 1, 0, 1], {"callbacks": [3]}, TypeError, "callbacks must be callables"),
])
def test_bad_input_is_rejected_before_training(X, y, kwargs, error, message):
    model = fastnn.mlp([2, 3, 2], seed=0)
    before = model.params.copy()
    with pytest.raises(error, match=message):
        model.fit(np.asanyarray(X), np.asanyarray(y), verbose=0, **kwargs)
    np.testing.assert_array_equal(model.params, before)


def test_y_with_nan_is_rejected_for_regression():
    model = fastnn.mlp([1, 1], seed=0)
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        model.fit(np.ones((3, 1)), [1.0, np.nan, 2.0], loss="mse", verbose=0)


def test_batch_size_above_the_data_is_clipped_with_a_warning(rng):
    X, y = blobs(rng, n=10)
    opt = fastnn.SGD(0.1)
    with pytest.warns(UserWarning, match="batch_size=64 is larger than the 10 training samples"):
        fastnn.mlp([2, 2], seed=0).fit(X, y, optimizer=opt, epochs=2, batch_size=64, verbose=0)
    assert opt.steps == 2


def test_training_through_step_fails_clearly(rng):
    X, y = blobs(rng, n=4)
    model = fastnn.Sequential(fastnn.Dense(2, 2), fastnn.Step(), fastnn.Dense(2, 2))
    with pytest.raises(ValueError, match="Step has no gradient"):
        model.fit(X, y, verbose=0)


def test_dtype_follows_the_model(rng):
    X, y = blobs(rng, n=10)
    for dtype in (np.float32, np.float64):
        model = fastnn.mlp([2, 3, 2], dtype=dtype, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.fit(X, y, epochs=1, verbose=0)
        assert model.params.dtype == dtype and model.outputs(X).dtype == dtype
        assert math.isfinite(model.evaluate(X, y)["loss"])


@pytest.mark.parametrize("backend,engine", [("cython", True), ("numba", True), ("numpy", False)])
@pytest.mark.parametrize("loss,lr", [("softmax_cross_entropy", 1e6), ("mse", 1e4)])
def test_a_loss_leaving_the_sane_range_is_divergence_and_the_kept_weights_predict_finite(rng, backend, engine,
                                                                                          loss, lr):
    X, y = blobs(rng, n=64)
    if loss == "mse":
        y = np.stack([y, 1 - y], axis=1).astype(np.float64) * 100
    model = fastnn.mlp([2, 16, 2], seed=0)
    with fastnn.use_backend(backend), pytest.warns(RuntimeWarning, match="training loss became"):
        history = model.fit(X, y, loss=loss, optimizer=fastnn.SGD(lr), epochs=200, batch_size=8, verbose=0,
                            engine=engine)
    assert history.diverged and history.stop_reason == "diverged"
    assert all(value <= 1e18 for value in history.loss)
    assert np.abs(model.params).max() <= 1e18
    assert np.isfinite(model.outputs(X.astype(np.float32))).all()


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
def test_fit_trains_on_data_as_they_were_when_they_share_the_model_s_memory(backend):
    """X given as a view of the model's own parameters is copied first: fit trains on the
    values it was called with, as with any other X (the engine refused it; the per-module
    path read the weights it was changing)."""
    results = []
    for shared in (True, False):
        model = fastnn.mlp([2, 3, 2], seed=0)
        X = model.params[:8].reshape(4, 2) if shared else model.params[:8].reshape(4, 2).copy()
        with fastnn.use_backend(backend):
            model.fit(X, [0, 1, 1, 0], optimizer=fastnn.SGD(0.5), epochs=3, batch_size=2, seed=0, verbose=0)
        results.append(model.params.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
