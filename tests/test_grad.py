"""Backpropagation against the naive central-difference gradient, float64, every activation and loss."""
import numpy as np
import pytest

import fastnn

ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]


def problem(loss, rng, n=6, n_in=3, n_out=3):
    X = rng.standard_normal((n, n_in))
    if loss == "softmax_cross_entropy":
        return X, rng.integers(0, n_out, n)
    if loss == "bce_with_logits":
        return X, (rng.random((n, n_out)) > 0.5).astype(float)
    return X, rng.standard_normal((n, n_out))


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse", "bce_with_logits"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backprop_equals_numerical_gradient(activation, loss, rng, any_backend):
    with fastnn.use_backend(any_backend.name):
        model = fastnn.mlp([3, 5, 4, 3], activation=activation, dtype=np.float64, seed=1)
        X, y = problem(loss, rng)
        value, grad = model.loss_and_grad(X, y, loss)
        numeric = fastnn.numerical_grad(model, X, y, loss)
    assert np.isfinite(value)
    scale = np.abs(numeric).max()
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * scale)


def test_one_hot_targets_give_the_label_gradient(rng):
    model = fastnn.mlp([3, 4, 3], dtype=np.float64, seed=0)
    X, labels = problem("softmax_cross_entropy", rng)
    loss_labels, grad_labels = model.loss_and_grad(X, labels)
    loss_onehot, grad_onehot = model.loss_and_grad(X, np.eye(3)[labels])
    assert loss_labels == pytest.approx(loss_onehot, rel=1e-12)
    np.testing.assert_allclose(grad_labels, grad_onehot, rtol=1e-12, atol=1e-15)


def test_sample_weight_enters_both_gradients(rng):
    model = fastnn.mlp([3, 4, 3], activation="tanh", dtype=np.float64, seed=0)
    X, y = problem("softmax_cross_entropy", rng)
    weight = rng.random(len(X))
    _, grad = model.loss_and_grad(X, y, sample_weight=weight)
    numeric = fastnn.numerical_grad(model, X, y, sample_weight=weight)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-10)


def test_numerical_grad_leaves_parameters_unchanged(rng):
    model = fastnn.mlp([3, 4, 3], dtype=np.float64, seed=0)
    before = model.params.copy()
    fastnn.numerical_grad(model, *problem("softmax_cross_entropy", rng))
    np.testing.assert_array_equal(model.params, before)


def test_dropout_is_off_when_computing_gradients(rng):
    model = fastnn.mlp([3, 8, 3], dtype=np.float64, dropout=0.5, seed=0)
    X, y = problem("softmax_cross_entropy", rng)
    first = model.loss_and_grad(X, y)[1]
    np.testing.assert_array_equal(first, model.loss_and_grad(X, y)[1])
    np.testing.assert_allclose(first, fastnn.numerical_grad(model, X, y), rtol=1e-6, atol=1e-10)


def test_bad_eps():
    model = fastnn.mlp([2, 2], dtype=np.float64)
    with pytest.raises(ValueError, match="eps must be > 0"):
        fastnn.numerical_grad(model, np.ones((1, 2)), [0], eps=0)
