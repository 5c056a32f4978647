"""Losses: target preparation, kernels, predictions and scores."""
import re

import numpy as np
import pytest

import fastnn
from fastnn.kernels import abi
from fastnn.losses import get_loss


def test_softmax_cross_entropy_takes_labels_or_one_hot():
    loss = fastnn.SoftmaxCrossEntropy()
    labels = loss.targets([2, 0, 1], 3, np.float32)
    assert labels.dtype == np.int64
    onehot = loss.targets(np.eye(3)[[2, 0, 1]], 3, np.float32)
    assert onehot.dtype == np.float32 and onehot.shape == (3, 3)
    Z = np.array([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0], [0.0, 5.0, 0.0]], np.float32)
    assert loss(Z, labels, np.empty_like(Z)) == pytest.approx(loss(Z, onehot, np.empty_like(Z)), rel=1e-6)
    assert loss.score(Z, labels) == 1.0 == loss.score(Z, onehot)


def test_mse_score_is_r2():
    loss = fastnn.MSE()
    y = loss.targets([1.0, 2.0, 3.0], 1, np.float64)
    assert y.shape == (3, 1)
    assert loss.score(y, y) == 1.0
    assert loss.score(np.full_like(y, 2.0), y) == pytest.approx(0.0)


def test_bce_targets_and_predictions():
    loss = fastnn.BCEWithLogits()
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
        loss.targets([0.0, 2.0], 1, np.float64)
    Z = np.array([[-3.0], [4.0]])
    np.testing.assert_allclose(loss.transform(Z), 1 / (1 + np.exp(-Z)))
    assert loss.score(Z, np.array([[0.0], [1.0]])) == 1.0


def test_bce_model_predicts_zero_one(rng):
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] > 0).astype(float)
    model = fastnn.mlp([2, 1], activation=None, seed=0)
    model.fit(X, y, loss="bce", optimizer=fastnn.Adam(0.1), epochs=50, verbose=0)
    assert set(np.unique(model.predict(X))) <= {0, 1}
    assert model.evaluate(X, y)["accuracy"] > 0.9


def test_zero_one_labels_for_one_output_point_at_bce(rng):
    X, y = rng.standard_normal((10, 2)), np.arange(10) % 2
    with pytest.raises(ValueError, match=r"\[0, 1\) for 1 outputs; got values from 0 to 1; for 0/1 labels a "
                                         r"one-output net needs loss=BCEWithLogits, or give it two outputs"):
        fastnn.mlp([2, 4, 1], seed=0).fit(X, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"for 3 outputs; got values from 0 to 3$"):
        fastnn.SoftmaxCrossEntropy().targets([0, 3], 3, np.float32)


LOSS_CLASSES = (fastnn.SoftmaxCrossEntropy, fastnn.MSE, fastnn.BCEWithLogits)


@pytest.mark.parametrize("cls,metric,probabilities", [(fastnn.SoftmaxCrossEntropy, "accuracy", True),
                                                      (fastnn.MSE, "r2", False),
                                                      (fastnn.BCEWithLogits, "accuracy", True)])
def test_each_loss_names_its_metric_and_says_whether_it_gives_probabilities(rng, cls, metric, probabilities):
    loss = cls()
    assert loss.metric_name == metric and loss.has_probabilities is probabilities
    X, y = rng.standard_normal((12, 2)), np.arange(12) % 2
    model = fastnn.mlp([2, 3, 2], loss=loss, seed=0)
    model.fit(X, np.eye(2)[y] if cls is not fastnn.SoftmaxCrossEntropy else y, epochs=1, verbose=0)
    assert model.history.metric_name == metric
    assert set(model.evaluate(X, np.eye(2)[y])) == {"loss", metric}


def test_predict_proba_is_refused_for_a_loss_without_probabilities(rng):
    X = rng.standard_normal((4, 2))
    for cls in LOSS_CLASSES:
        model = fastnn.mlp([2, 3], loss=cls, seed=0)
        if cls().has_probabilities:
            np.testing.assert_array_equal(model.predict_proba(X), model.loss.transform(model.outputs(X)))
        else:
            with pytest.raises(ValueError, match="predict_proba needs a classification loss; this model's loss is "
                                                 f"{cls.__name__}$"):
                model.predict_proba(X)


def test_each_loss_predicts_by_its_rule():
    Z = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]], np.float32)
    labels = fastnn.SoftmaxCrossEntropy().predict(Z)
    np.testing.assert_array_equal(labels, [2, 0])
    assert labels.dtype.kind == "i"
    zero_one = fastnn.BCEWithLogits().predict(Z)
    np.testing.assert_array_equal(zero_one, [[1, 0, 1], [1, 0, 0]])
    assert zero_one.dtype == np.int64
    assert fastnn.MSE().predict(Z) is Z


def test_each_loss_gives_the_engine_its_code_for_its_targets():
    cross_entropy = fastnn.SoftmaxCrossEntropy()
    labels, rows = cross_entropy.targets([0, 2], 3, np.float32), cross_entropy.targets(np.eye(3)[[0, 2]], 3, np.float32)
    assert cross_entropy.engine_code(labels) == abi.CROSS_ENTROPY
    assert cross_entropy.engine_code(rows) == abi.CROSS_ENTROPY_SOFT
    assert fastnn.MSE().engine_code(fastnn.MSE().targets([[0.5]], 1, np.float32)) == abi.MSE
    assert fastnn.BCEWithLogits().engine_code(fastnn.BCEWithLogits().targets([[1.0]], 1, np.float32)) == abi.BCE


@pytest.mark.parametrize("name,cls", [("cross_entropy", fastnn.SoftmaxCrossEntropy), ("mse", fastnn.MSE),
                                      ("bce", fastnn.BCEWithLogits), (fastnn.MSE, fastnn.MSE)])
def test_get_loss(name, cls):
    assert isinstance(get_loss(name), cls)


def test_unknown_loss():
    with pytest.raises(ValueError, match="loss must be a Loss or one of"):
        get_loss("hinge")


def test_string_labels_are_rejected_by_the_model_loss():
    with pytest.raises(ValueError, match="integer labels"):
        fastnn.SoftmaxCrossEntropy().targets(np.array(["a", "b"]), 2, np.float32)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("call,message", [
    ("fastnn.SoftmaxCrossEntropy()(np.zeros((64, 10), np.float32), np.full(64, 10**9), np.empty((64, 10), np.float32))",
     r"labels must lie in \[0, 10\) for 10 logits; got 1000000000"),
    ("fastnn.SoftmaxCrossEntropy()(np.zeros((64, 10), np.float32), np.full(64, 12), np.empty((64, 10), np.float32))",
     r"labels must lie in \[0, 10\)"),
    ("fastnn.MSE()(np.zeros((64, 10), np.float32), np.zeros((64, 10), np.float32), np.empty((2, 10), np.float32))",
     r"grad must have shape \(64, 10\); got \(2, 10\)"),
    ("fastnn.SoftmaxCrossEntropy().transform(np.zeros((4, 3), np.int64))", "Z must be float32 or float64"),
])
def test_losses_check_their_arguments(isolated, backend, call, message):
    """A loss called with bad arguments raises a clear error instead of crashing (run in a
    fresh process: unchecked, these corrupted the heap)."""
    done = isolated(f"""
        import numpy as np, fastnn
        fastnn.set_backend("{backend}")
        try:
            {call}
        except (ValueError, TypeError) as error:
            print("refused:", error)
        """)
    assert done.returncode == 0, done.stderr
    assert re.search("refused: " + message, done.stdout), done.stdout
