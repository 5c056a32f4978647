"""save/load: round trips, exact resumption of training, pickling, estimators (atomic
writes and bad files: test_io_files.py)."""
import os
import pathlib
import pickle

import numpy as np
import pytest

import fastnn
from fastnn.io import load, save
from fastnn.layers import ACTIVATION_MODULES
from fastnn.optim import SGD, Adam, StepDecay
from model_files import OPTIMIZERS, assert_same_bits, assert_same_model, data, trained_model



def test_round_trip_of_an_unfit_model_with_every_activation(tmp_path, dtype):
    layers = [fastnn.Dense(4, 6, dtype=dtype, seed=0)]
    for name, cls in ACTIVATION_MODULES.items():
        layers += [cls(alpha=0.3) if name == "leaky_relu" else cls(), fastnn.Dense(6, 6, dtype=dtype, seed=1)]
    layers += [fastnn.Dropout(0.4, seed=2), fastnn.Dense(6, 2, init=lambda shape, rng: np.ones(shape),
                                                         dtype=dtype)]
    model = fastnn.Sequential(*layers)
    save(model, tmp_path / "model.fnn")
    loaded = load(tmp_path / "model.fnn")
    assert_same_model(loaded, model)
    assert [layer.alpha for layer in loaded.layers if isinstance(layer, fastnn.LeakyReLU)] == [0.3]
    assert [layer.p for layer in loaded.layers if isinstance(layer, fastnn.Dropout)] == [0.4]
    assert loaded.loss is None and loaded.optimizer is None
    X = np.random.default_rng(3).standard_normal((7, 4)).astype(dtype)
    assert_same_bits(loaded.outputs(X), model.outputs(X))


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_round_trip_keeps_loss_optimizer_and_its_state(tmp_path, dtype, make_optimizer):
    model = trained_model(dtype, make_optimizer())
    model.optimizer.lr *= 0.5
    save(model, tmp_path / "model.fnn")
    loaded = load(tmp_path / "model.fnn")
    assert_same_model(loaded, model)
    assert type(loaded.loss) is type(model.loss)
    old, new = model.optimizer, loaded.optimizer
    assert type(new) is type(old)
    assert repr(new) == repr(old)
    assert {k: v for k, v in new.get_params().items() if k != "schedule"} == \
        {k: v for k, v in old.get_params().items() if k != "schedule"}
    if old.schedule is not None:
        assert type(new.schedule) is type(old.schedule) and vars(new.schedule) == vars(old.schedule)
    assert new.lr == old.lr and new.steps == old.steps == 6
    assert new.state.keys() == old.state.keys() == set(type(old).state_names)
    for name in old.state:
        assert_same_bits(new.state[name], old.state[name])


def test_dropout_layers_keep_sharing_one_generator_in_the_same_state(tmp_path):
    model = fastnn.mlp([3, 4, 4, 2], dropout=0.5, seed=0)
    first, second = [layer for layer in model.layers if isinstance(layer, fastnn.Dropout)]
    assert first._rng is second._rng
    save(model, tmp_path / "model.fnn")
    new_first, new_second = [layer for layer in load(tmp_path / "model.fnn").layers
                             if isinstance(layer, fastnn.Dropout)]
    assert new_first._rng is new_second._rng and new_first._rng is not first._rng
    assert_same_bits(new_first._rng.random(5), first._rng.random(5))


def test_save_and_load_accept_str_and_pathlike_and_add_no_extension(tmp_path):
    model = fastnn.mlp([2, 2], seed=0)
    save(model, str(tmp_path / "as_str"))
    save(model, pathlib.Path(tmp_path / "as_path"))
    model.save(tmp_path / "via_method")
    assert sorted(os.listdir(tmp_path)) == ["as_path", "as_str", "via_method"]
    for name in ("as_str", "as_path", "via_method"):
        assert_same_model(load(str(tmp_path / name)), model)
        assert_same_model(load(pathlib.Path(tmp_path / name)), model)


def test_save_refuses_what_it_cannot_store(tmp_path):
    class MyReLU(fastnn.ReLU):
        pass

    model = fastnn.mlp([2, 3, 2], seed=0)
    model.optimizer = SGD(schedule=lambda epoch, lr: lr)
    with pytest.raises(ValueError, match="cannot save the learning-rate schedule"):
        save(model, tmp_path / "model.fnn")
    with pytest.raises(ValueError, match="cannot save layer MyReLU"):
        save(fastnn.Sequential(fastnn.Dense(2, 2), MyReLU()), tmp_path / "model.fnn")
    with pytest.raises(TypeError, match="model must be a fastnn Sequential"):
        save(fastnn.Dense(2, 2), tmp_path / "model.fnn")
    assert os.listdir(tmp_path) == []


# Resuming training


@pytest.mark.parametrize("make_optimizer", [OPTIMIZERS["sgd"], lambda: SGD(lr=0.05, momentum=0.9),
                                            OPTIMIZERS["adam"]], ids=["sgd", "momentum", "adam"])
def test_training_resumed_from_a_file_matches_uninterrupted_training(tmp_path, make_optimizer):
    X, y = data(np.float64)
    straight = trained_model(np.float64, make_optimizer(), epochs=2)
    first_half = trained_model(np.float64, make_optimizer(), epochs=1)
    save(first_half, tmp_path / "checkpoint.fnn")
    resumed = load(tmp_path / "checkpoint.fnn")
    resumed.fit(X, y, optimizer=resumed.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_bits(resumed.params, straight.params)
    assert resumed.optimizer.steps == straight.optimizer.steps
    for name in straight.optimizer.state:
        assert_same_bits(resumed.optimizer.state[name], straight.optimizer.state[name])


def test_training_resumed_with_a_schedule_matches_uninterrupted_training(tmp_path):
    X, y = data(np.float64)
    straight = trained_model(np.float64, SGD(lr=0.05, schedule=StepDecay(1, gamma=0.5)), epochs=2)
    first_half = trained_model(np.float64, SGD(lr=0.05, schedule=StepDecay(1, gamma=0.5)), epochs=1)
    save(first_half, tmp_path / "checkpoint.fnn")
    resumed = load(tmp_path / "checkpoint.fnn")
    resumed.fit(X, y, optimizer=resumed.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_bits(resumed.params, straight.params)


# Pickling


def test_pickle_round_trip_keeps_layers_as_views_of_the_flat_buffers():
    model = trained_model(np.float32, Adam())
    copy = pickle.loads(pickle.dumps(model))
    assert_same_bits(copy.params, model.params)
    for layer in copy.dense_layers:
        for view, buffer in ((layer.W, copy.params), (layer.b, copy.params),
                             (layer.dW, copy.grads), (layer.db, copy.grads)):
            assert np.shares_memory(view, buffer)
    X, y = data(np.float32)
    model.fit(X, y, optimizer=model.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    copy.fit(X, y, optimizer=copy.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_bits(copy.outputs(X), model.outputs(X))


# Estimators


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_round_trip_predicts_and_keeps_training_identically(tmp_path):
    from sklearn.datasets import load_digits

    from fastnn.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    estimator = MLPClassifier((16,), max_iter=3, batch_size=64, random_state=0).fit(X[:1000], labels[:1000])
    estimator.save(tmp_path / "digits.fnn")
    loaded = load(tmp_path / "digits.fnn")
    assert type(loaded) is MLPClassifier and loaded.get_params() == estimator.get_params()
    np.testing.assert_array_equal(loaded.classes_, estimator.classes_)
    np.testing.assert_array_equal(loaded.predict(X[1000:]), estimator.predict(X[1000:]))
    assert loaded.n_iter_ == 3 and loaded.loss_curve_ == estimator.loss_curve_
    for fitted in (estimator, loaded):
        fitted.partial_fit(X[:1000], labels[:1000])
    assert_same_bits(loaded.model_.params, estimator.model_.params)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_class_level_loaders_give_their_class_and_refuse_another(tmp_path):
    X = np.random.default_rng(0).standard_normal((40, 3))
    fastnn.MLPRegressor((4,), max_iter=2, random_state=0).fit(X, X[:, 0]).save(tmp_path / "regressor.fnn")
    fastnn.MLPClassifier((4,), max_iter=2, random_state=0).fit(X, X[:, 0] > 0).save(tmp_path / "classifier.fnn")
    fastnn.mlp([3, 2], seed=0).save(tmp_path / "net.fnn")
    assert type(fastnn.MLPRegressor.load(tmp_path / "regressor.fnn")) is fastnn.MLPRegressor
    assert type(fastnn.MLPClassifier.load(tmp_path / "classifier.fnn")) is fastnn.MLPClassifier
    assert type(fastnn.Sequential.load(tmp_path / "net.fnn")) is fastnn.Sequential
    for cls, name, held in ((fastnn.MLPClassifier, "regressor.fnn", "MLPRegressor"),
                            (fastnn.MLPRegressor, "net.fnn", "Sequential"),
                            (fastnn.Sequential, "classifier.fnn", "MLPClassifier")):
        with pytest.raises(TypeError, match=f"holds a {held}, not a {cls.__name__}; fastnn.load"):
            cls.load(tmp_path / name)


def test_unfitted_estimator_and_foreign_objects_are_refused(tmp_path):
    from fastnn.sklearn import MLPRegressor

    with pytest.raises(ValueError, match="MLPRegressor is not fitted yet"):
        save(MLPRegressor(), tmp_path / "x")
    with pytest.raises(TypeError, match="model must be a fastnn Sequential, Stack, MLPClassifier or MLPRegressor; got dict"):
        save({}, tmp_path / "x")
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_with_a_callable_init_is_refused(tmp_path):
    from fastnn.sklearn import MLPRegressor

    X = np.random.default_rng(0).standard_normal((20, 2))
    estimator = MLPRegressor((3,), max_iter=2, init=lambda shape, rng: np.zeros(shape)).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="cannot save MLPRegressor parameters"):
        estimator.save(tmp_path / "x")
