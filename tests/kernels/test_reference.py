"""The kernels against independent truths: finite differences, known values, properties.

The backend comparison tests trust the reference; these tests are why.
They run on every backend, in float64 where derivatives are checked.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fastnn.kernels as K
from fastnn.grad import central_difference
from fastnn.kernels import ACTIVATIONS

TRAINABLE = [name for name in ACTIVATIONS if name != "step"]


def loss_targets(rng, kernel, shape):
    if kernel == "softmax_cross_entropy":
        return rng.integers(0, shape[1], shape[0])
    if kernel == "mse":
        return rng.standard_normal(shape)
    # Soft targets that do not sum to one exercise the general gradient.
    return rng.random(shape)


LOSSES = ["softmax_cross_entropy", "softmax_cross_entropy_soft", "mse", "bce_with_logits"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kernel", LOSSES)
def test_loss_gradient_matches_finite_differences(any_backend, rng, kernel, weighted):
    Z = 2 * rng.standard_normal((5, 4))
    target = loss_targets(rng, kernel, Z.shape)
    weight = rng.random(5) + 0.1 if weighted else None
    loss_fn = getattr(any_backend, kernel)
    scratch, grad = np.empty_like(Z), np.empty_like(Z)
    loss_fn(Z, target, grad, weight)
    numeric = central_difference(lambda: loss_fn(Z, target, scratch, weight), Z)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@given(
    Z=arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
             elements=st.floats(-1e4, 1e4)),
    float_type=st.sampled_from([np.float32, np.float64]),
)
@settings(max_examples=60, deadline=None)
def test_softmax_rows_are_distributions(Z, float_type):
    Z = Z.astype(float_type)
    for name in K.available_backends():
        P = np.empty_like(Z)
        K.get_backend(name).softmax(Z, P)
        assert np.isfinite(P).all() and (P >= 0).all()
        np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5 if float_type == np.float32 else 1e-12)


@given(
    Z=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 5)),
             elements=st.floats(-30, 30)),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=40, deadline=None)
def test_cross_entropy_gradient_property(Z, seed):
    """For any moderate logits and labels, the fused gradient is the derivative of the loss."""
    labels = np.random.default_rng(seed).integers(0, Z.shape[1], Z.shape[0])
    for name in K.available_backends():
        kernel = K.get_backend(name).softmax_cross_entropy
        grad, scratch = np.empty_like(Z), np.empty_like(Z)
        kernel(Z, labels, grad)
        numeric = central_difference(lambda: kernel(Z, labels, scratch), Z)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("activation", TRAINABLE)
def test_layer_backprop_matches_finite_differences(any_backend, rng, activation):
    """dense_forward, activation_backward and dense_backward compose to the true gradient
    of L = sum(G * f(X W + b)) with respect to X, W and b."""
    X, W, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)
    G = rng.standard_normal((4, 5))
    A, scratch = np.empty((4, 5)), np.empty((4, 5))

    def loss():
        any_backend.dense_forward(X, W, b, scratch, activation, 0.1)
        return float((G * scratch).sum())

    any_backend.dense_forward(X, W, b, A, activation, 0.1)
    dZ = np.empty_like(A)
    any_backend.activation_backward(A, G, dZ, activation, 0.1)
    dW, db, dX = np.empty_like(W), np.empty_like(b), np.empty_like(X)
    any_backend.dense_backward(X, W, dZ, dW, db, dX)
    for analytic, variable in ((dW, W), (db, b), (dX, X)):
        np.testing.assert_allclose(analytic, central_difference(loss, variable), rtol=1e-6, atol=1e-8)


def test_step_activation_values(any_backend):
    Z = np.array([[-2.0, -1e-9, 0.0, 1e-9, 3.0]])
    out = np.empty_like(Z)
    any_backend.activation_forward(Z, out, "step")
    np.testing.assert_array_equal(out, [[0, 0, 1, 1, 1]])


def test_step_activation_has_no_backward(any_backend):
    A = np.ones((1, 2))
    with pytest.raises(ValueError, match="step.*forward only"):
        any_backend.activation_backward(A, A, np.empty_like(A), "step")


def test_sigmoid_is_stable_at_extremes(any_backend, dtype):
    Z = np.array([[-1e4, -30.0, 0.0, 30.0, 1e4]], dtype)
    out = np.empty_like(Z)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        any_backend.activation_forward(Z, out, "sigmoid")
    np.testing.assert_allclose(out, [[0, np.exp(-30.0), 0.5, 1, 1]], rtol=1e-6, atol=0)


def test_sgd_known_values(any_backend):
    """Two momentum steps by hand: v1 = g, p1 = p0 - lr g; v2 = 0.9 g + g, p2 = p1 - lr v2."""
    params, grad, velocity = np.array([1.0]), np.array([0.5]), np.zeros(1)
    for _ in range(2):
        any_backend.sgd_update(params, grad, velocity, 0.1, 0.9, False, 0.0)
    np.testing.assert_allclose(velocity, [0.95])
    np.testing.assert_allclose(params, [1.0 - 0.05 - 0.095])
    params, velocity = np.array([1.0]), np.zeros(1)
    any_backend.sgd_update(params, grad, velocity, 0.1, 0.9, True, 0.0)
    np.testing.assert_allclose(params, [1.0 - 0.1 * (0.5 + 0.9 * 0.5)])


def test_sgd_weight_decay_adds_to_gradient(any_backend):
    params, velocity = np.array([2.0]), np.zeros(1)
    any_backend.sgd_update(params, np.array([0.0]), velocity, 0.5, 0.0, False, 0.1)
    np.testing.assert_allclose(params, [2.0 - 0.5 * 0.1 * 2.0])
    np.testing.assert_array_equal(velocity, [0.0])


def test_adam_first_step_moves_by_lr(any_backend):
    """With bias correction, the first Adam step is lr * sign(grad) whatever the gradient's size."""
    params = np.zeros(4)
    grad = np.array([1e-3, -5.0, 200.0, -1e-2])
    m, v = np.zeros(4), np.zeros(4)
    any_backend.adam_update(params, grad, m, v, 1, 0.01, 0.9, 0.999, 1e-12, 0.0, False)
    np.testing.assert_allclose(params, -0.01 * np.sign(grad), rtol=1e-6)


def test_adamw_decays_weights_before_the_step(any_backend):
    params, zero = np.array([3.0]), np.zeros(1)
    any_backend.adam_update(params, zero, np.zeros(1), np.zeros(1), 1, 0.1, 0.9, 0.999, 1e-8, 0.5, True)
    np.testing.assert_allclose(params, [3.0 * (1 - 0.1 * 0.5)])
