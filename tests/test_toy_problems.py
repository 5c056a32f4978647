"""The seed experiments' toy problems train to their known answers."""
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import datasets

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def test_xor_with_a_2_8_2_sigmoid_net():
    X, y = datasets.xor_truth_table()
    model = fastnn.mlp([2, 8, 2], activation="sigmoid", seed=0)
    model.fit(X, y, optimizer=fastnn.Adam(0.05), epochs=500, batch_size="full", verbose=0)
    np.testing.assert_array_equal(model.predict(X), y)


def test_circles_with_one_tanh_hidden_layer():
    X, y = datasets.circles(1000, noise=0.1, factor=0.5, seed=0)
    model = fastnn.mlp([2, 16, 2], activation="tanh", seed=0)
    model.fit(X[:800], y[:800], optimizer=fastnn.SGD(0.1, momentum=0.9), epochs=60, batch_size=16,
              seed=0, verbose=0)
    assert model.evaluate(X[800:], y[800:])["accuracy"] >= 0.93


@pytest.mark.parametrize("batch_size", [1, 10, "full"])
def test_linear_regression_recovers_slope_and_intercept(batch_size):
    X, y = datasets.linear(200, slope=-1.5, intercept=0.7, noise=0.05, seed=0)
    model = fastnn.mlp([1, 1], activation=None, dtype=np.float64, seed=0)
    epochs = {1: 20, 10: 150, "full": 1500}[batch_size]
    model.fit(X, y, loss="mse", optimizer=fastnn.SGD(0.05 if batch_size == 1 else 0.3), epochs=epochs,
              batch_size=batch_size, seed=0, verbose=0)
    slope, intercept = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]
    W, b = model.parameters()
    assert W[0, 0] == pytest.approx(slope, abs=0.02) and slope == pytest.approx(-1.5, abs=0.05)
    assert b[0] == pytest.approx(intercept, abs=0.02) and intercept == pytest.approx(0.7, abs=0.05)


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"the real MNIST digits are not at {MNIST_DIR}")
def test_mnist_one_hidden_layer_reaches_90_percent():
    X, y = datasets.load_mnist(MNIST_DIR, kind="t10k")
    model = fastnn.mlp([784, 128, 10], activation="relu", seed=0)
    model.fit(X[:8000], y[:8000], optimizer=fastnn.Adam(1e-3), epochs=8, batch_size=64, seed=0, verbose=0)
    assert model.evaluate(X[8000:], y[8000:])["accuracy"] >= 0.90
