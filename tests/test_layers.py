"""Modules driven by hand: forward, backward, parameters, Dropout, Step."""
import numpy as np
import pytest

import fastnn
from fastnn.layers import ACTIVATION_MODULES


def test_dense_forward_backward_by_hand(rng):
    layer = fastnn.Dense(3, 2, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 3))
    out = layer.forward(x)
    np.testing.assert_allclose(out, x @ layer.W + layer.b)
    grad = rng.standard_normal((4, 2))
    dx = layer.backward(grad)
    np.testing.assert_allclose(layer.dW, x.T @ grad)
    np.testing.assert_allclose(layer.db, grad.sum(axis=0))
    np.testing.assert_allclose(dx, grad @ layer.W.T)
    assert layer.backward(grad, input_grad=False) is None


def test_dense_weights_have_shape_in_out_and_can_be_set():
    layer = fastnn.Dense(3, 2)
    assert layer.W.shape == (3, 2) and layer.b.shape == (2,)
    layer.W = np.arange(6).reshape(3, 2)
    layer.b = [1, -1]
    np.testing.assert_array_equal(layer.forward(np.ones((1, 3), np.float32)), [[7, 8]])
    with pytest.raises(ValueError, match=r"W must have shape \(3, 2\); got \(2, 3\)"):
        layer.W = np.zeros((2, 3))


@pytest.mark.parametrize("args,message", [
    ((0, 2), "in_features must be an integer >= 1; got 0"),
    ((2, 2.5), "out_features must be an integer >= 1; got 2.5"),
])
def test_dense_rejects_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        fastnn.Dense(*args)


def test_dense_rejects_integer_dtype():
    with pytest.raises(TypeError, match="dtype must be float32 or float64; got int32"):
        fastnn.Dense(2, 2, dtype=np.int32)


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        fastnn.Dense(2, 2).backward(np.ones((1, 2), np.float32))


@pytest.mark.parametrize("name", sorted(set(ACTIVATION_MODULES) - {"step"}))
def test_activation_modules_backward_matches_finite_differences(name, rng):
    module = ACTIVATION_MODULES[name]()
    x = rng.standard_normal((3, 4))
    g = rng.standard_normal((3, 4))
    module.forward(x)
    analytic = module.backward(g)
    eps = 1e-6
    numeric = ((module.forward(x + eps) - module.forward(x - eps)) / (2 * eps)) * g
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_leaky_relu_slope():
    module = fastnn.LeakyReLU(0.2)
    np.testing.assert_allclose(module.forward(np.array([[-1.0, 2.0]])), [[-0.2, 2.0]])
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        fastnn.LeakyReLU(-1)


def test_step_is_forward_only():
    step = fastnn.Step()
    np.testing.assert_array_equal(step.forward(np.array([[-0.5, 0.0, 2.0]])), [[0, 1, 1]])
    with pytest.raises(ValueError, match="Step has no gradient"):
        step.backward(np.ones((1, 3)))


def test_hand_built_step_network_computes_xor():
    """The classic two-layer threshold network with chosen weights."""
    hidden = fastnn.Dense(2, 2, dtype=np.float64)
    hidden.W = [[1, 1], [1, 1]]
    hidden.b = [-0.5, -1.5]  # OR and AND
    output = fastnn.Dense(2, 1, dtype=np.float64)
    output.W = [[1], [-1]]
    output.b = [-0.5]  # OR and not AND
    net = fastnn.Sequential(hidden, fastnn.Step(), output, fastnn.Step())
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    np.testing.assert_array_equal(net.forward(X).ravel(), [0, 1, 1, 0])


def test_dropout_is_inverted_seeded_and_training_only():
    x = np.ones((2000, 50), np.float32)
    drop = fastnn.Dropout(0.25, seed=3)
    out = drop.forward(x)
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(drop.backward(x), out)
    again = fastnn.Dropout(0.25, seed=3).forward(x)
    np.testing.assert_array_equal(again, out)
    drop.eval()
    assert drop.forward(x) is x
    np.testing.assert_array_equal(drop.backward(x), x)


def test_dropout_rejects_bad_probability():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\); got 1.0"):
        fastnn.Dropout(1.0)
