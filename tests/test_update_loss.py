"""fit(loss_every=N): history.update_loss holds the mean training loss of every N updates,
the same on the per-module path and in both compiled engines, for one model and for each
model of a stack, across the engine's chunks of epochs; off, nothing is recorded."""
import numpy as np
import pytest

import fastnn
from engine_cases import ENGINE_BACKENDS
from fastnn import datasets

MODES = {"online sgd": (1, lambda: fastnn.SGD(0.05)), "online adam": (1, lambda: fastnn.Adam(0.01)),
         "mini-batch momentum": (4, lambda: fastnn.SGD(0.05, momentum=0.9)),
         "full adam": ("full", lambda: fastnn.Adam(0.01))}


def _fit(backend, mode, dtype=np.float64, seed=0, epochs=6, **options):
    batch_size, optimizer = MODES[mode]
    X, y = datasets.ten_points()
    model = fastnn.mlp([2, 2, 3, 2], activation="sigmoid", dtype=dtype, seed=seed)
    with fastnn.use_backend(backend):
        history = model.fit(X, y, optimizer=optimizer(), epochs=epochs, batch_size=batch_size, seed=seed,
                            verbose=0, engine=backend != "numpy", **options)
    return history


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_the_engines_record_the_update_losses_of_the_per_module_path(backend, mode, dtype):
    want = _fit("numpy", mode, dtype, loss_every=1)
    got = _fit(backend, mode, dtype, loss_every=1)
    updates = 6 * {1: 10, 4: 3, "full": 1}[MODES[mode][0]]
    assert got.update_loss_every == 1 and len(got.update_loss) == updates
    np.testing.assert_array_equal(got.update_step, np.arange(1, updates + 1))
    np.testing.assert_array_equal(want.update_step, got.update_step)
    np.testing.assert_allclose(got.update_loss, want.update_loss, rtol=1e-10 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("backend", ["numpy", *ENGINE_BACKENDS])
def test_windows_average_the_updates_and_span_epochs_and_chunks(backend):
    """Windows of 7 updates over epochs of 10, and through the engine's chunks of many
    epochs (no validation: one call trains several epochs); the last window is short."""
    every = _fit(backend, "online sgd", epochs=103, loss_every=1)
    windows = _fit(backend, "online sgd", epochs=103, loss_every=7)
    losses = np.asarray(every.update_loss)
    np.testing.assert_array_equal(windows.update_step, [*range(7, 1030, 7), 1030])
    want = [losses[i:i + 7].mean() for i in range(0, 1030, 7)]
    np.testing.assert_allclose(windows.update_loss, want, rtol=1e-12)
    # One window per epoch is the epoch's loss (its batches are alike).
    epochs = _fit(backend, "online sgd", epochs=103, loss_every=10)
    np.testing.assert_allclose(epochs.update_loss, epochs.loss, rtol=1e-12)


def test_recording_changes_nothing_else(engine_backend):
    plain = _fit(engine_backend, "mini-batch momentum", epochs=20)
    recorded = _fit(engine_backend, "mini-batch momentum", epochs=20, loss_every=3, validation_data=None)
    assert plain.loss == recorded.loss and plain.metric == recorded.metric
    assert plain.update_loss.size == plain.update_step.size == 0 and plain.update_loss_every is None
    assert recorded.update_loss.size == 20 and "update_loss" not in plain.as_dict()  # 60 updates / 3
    np.testing.assert_array_equal(recorded.as_dict()["update_loss"], recorded.update_loss)


@pytest.mark.parametrize("backend", ["numpy", *ENGINE_BACKENDS])
@pytest.mark.parametrize("mode", ["online sgd", "online adam", "mini-batch momentum"])
def test_each_model_of_a_stack_records_its_own_updates(backend, mode):
    """Online plain SGD of a stack trains across the Cython engine's lanes."""
    batch_size, optimizer = MODES[mode]
    X, y = datasets.ten_points()
    stack = fastnn.mlp([2, 2, 3, 2], activation="sigmoid", dtype=np.float64, seed=range(3))
    with fastnn.use_backend(backend):
        histories = stack.fit(X, y, optimizer=optimizer(), epochs=5, batch_size=batch_size, seed=[0, 1, 2],
                              verbose=0, engine=backend != "numpy", loss_every=2)
    for k, history in enumerate(histories):
        alone = _fit(backend, mode, seed=k, epochs=5, loss_every=2)
        np.testing.assert_allclose(history.update_loss, alone.update_loss, rtol=1e-10)
        np.testing.assert_array_equal(history.update_step, alone.update_step)


@pytest.mark.parametrize("backend", ["numpy", *ENGINE_BACKENDS])
def test_a_diverged_fit_records_the_updates_of_its_completed_epochs(backend):
    """A linear net with too large a step: its loss grows until epoch 23 stops it; the
    updates of that epoch before the stop are not recorded, as the epoch is not."""
    X, y = datasets.ten_points()
    model = fastnn.mlp([2, 2], dtype=np.float64, seed=0)
    with fastnn.use_backend(backend), pytest.warns(RuntimeWarning, match="training loss became"):
        history = model.fit(3 * X, np.eye(2)[y], loss="mse", optimizer=fastnn.SGD(0.5), epochs=200, batch_size=3,
                            seed=0, verbose=0, engine=backend != "numpy", loss_every=2)
    assert history.diverged and len(history) == 22
    np.testing.assert_array_equal(history.update_step, np.arange(2, 4 * 22 + 1, 2))
    assert np.isfinite(history.update_loss).all() and history.update_loss[-1] > 1e15


@pytest.mark.parametrize("value", [0, -3, 1.5, "2", True])
def test_a_bad_loss_every_is_refused_by_name(value):
    X, y = datasets.ten_points()
    model = fastnn.mlp([2, 3, 2], seed=0)
    before = model.params.copy()
    with pytest.raises((TypeError, ValueError), match="loss_every"):
        model.fit(X, y, epochs=1, loss_every=value, verbose=0)
    np.testing.assert_array_equal(model.params, before)
